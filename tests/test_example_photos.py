"""The bundled photos: every one opens, the examples come first, and each gallery photo has a stated licence."""

from __future__ import annotations

from onenet_hf import load_image
from onenet_hf.data.example_photos import EXAMPLE_PHOTOS, PHOTO_CREDITS, example_gallery, example_photos


def test_the_example_gallery_starts_with_the_examples_and_every_photo_is_credited_and_opens():
    gallery = example_gallery()
    assert [p.name for p in example_photos()] == list(EXAMPLE_PHOTOS)
    assert gallery[: len(EXAMPLE_PHOTOS)] == example_photos() and len(gallery) == 18
    assert len({p.name for p in gallery}) == len(gallery)
    for photo in gallery:
        assert photo.name in PHOTO_CREDITS
        assert load_image(photo).mode == "RGB"
