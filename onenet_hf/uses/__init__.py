"""One small module per use of the network; each exposes a plain function."""
