"""Helpers with no knowledge of the network: messages, optional extras, atomic files, top-k, processes, threads."""
