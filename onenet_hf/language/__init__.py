"""The language sides the uses share: GloVe word vectors, the ImageNet classes' everyday words, the frozen
sentence encoder."""
