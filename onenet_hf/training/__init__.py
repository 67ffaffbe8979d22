"""Training: the caption network, then its heads, then SCST with CIDEr, and the arguments of each command."""
