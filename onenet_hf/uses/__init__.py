"""One small module per use of the network, each behind one `OneNet` method (the lower layer of the API).

A use's module turns inputs into model calls and results; the network's maths is in `OneNetModel`. Adding a
use: see DEVELOPERS.md.
"""
