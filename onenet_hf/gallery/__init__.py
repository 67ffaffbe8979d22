"""Galleries: the index (reading, searching), its build (listing, embedding, shards, the SQLite catalogue) and
each large shard's ANN files."""
