"""Quality: what a choice does to the dev-set figures (captions, tags, search, int8, Explore, Create)."""
