"""Sample photos that ship inside scikit-image, so demos work on a fresh, offline machine."""

from __future__ import annotations

from pathlib import Path

SAMPLE_PHOTOS = (
    "chelsea.png",
    "astronaut.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "camera.png",
)


def sample_photos() -> list[Path]:
    """Paths of scikit-image's bundled photos (a cat, an astronaut, a coffee cup, a motorbike, ...)."""
    try:
        import skimage
    except ImportError as error:
        raise ImportError("sample photos come from scikit-image: pip install scikit-image") from error
    folder = Path(skimage.__file__).parent / "data"
    return [folder / name for name in SAMPLE_PHOTOS if (folder / name).is_file()]


__all__ = ["SAMPLE_PHOTOS", "sample_photos"]
