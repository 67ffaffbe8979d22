"""Explore: views into the network (embedding maps, neurons, where each caption word comes from, layer by
layer) and the contact sheets they draw."""
