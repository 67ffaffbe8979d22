"""Create: images the network makes by optimising pixels (feature visualisation, a sentence's image, DeepDream,
style transfer), and the pixel optimiser they share."""
