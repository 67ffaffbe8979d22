"""Publishing: Hub release folders and self-contained Space folders."""
