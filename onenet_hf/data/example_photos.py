"""Photos that ship inside scikit-image and scikit-learn, so demos work on a fresh, offline machine.

`example_photos()` are the six examples the CLI and the Space offer; `example_gallery()` adds every other openly
licensed photo of those packages, so the default Space gallery gives maps and neurons enough images to show.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLE_PHOTOS = (
    "chelsea.png",
    "astronaut.png",
    "coffee.png",
    "motorcycle_left.png",
    "rocket.jpg",
    "camera.png",
)
# The other photos the packages bundle whose licence their docs state (scikit-image's skimage.data docstrings,
# scikit-learn's datasets/images/README.txt); the rest (moon, page, cell, ...) state none and stay out.
_GALLERY_EXTRAS = {
    "skimage": (
        "motorcycle_right.png",
        "coins.png",
        "hubble_deep_field.jpg",
        "retina.jpg",
        "text.png",
        "clock_motion.png",
        "horse.png",
        "brick.png",
        "grass.png",
        "gravel.png",
    ),
    "sklearn": ("china.jpg", "flower.jpg"),
}
PHOTO_CREDITS = {
    "astronaut.png": "scikit-image example photo, NASA, public domain",
    "camera.png": "scikit-image example photo, CC0, by the photographer Lav Varshney",
    "chelsea.png": "scikit-image example photo, CC0, by the photographer Stefan van der Walt",
    "coffee.png": "scikit-image example photo, CC0, by the photographer Rachel Michetti",
    "motorcycle_left.png": "scikit-image example photo, Middlebury 2014 stereo dataset (Scharstein et al., GCPR 2014)",
    "motorcycle_right.png": "scikit-image example photo, Middlebury 2014 stereo dataset (Scharstein et al., GCPR 2014)",
    "rocket.jpg": "scikit-image example photo, SpaceX, released into the public domain",
    "coins.png": "scikit-image example photo, Brooklyn Museum Collection, no known copyright restrictions",
    "hubble_deep_field.jpg": "scikit-image example photo, NASA (HubbleSite), public domain",
    "retina.jpg": "scikit-image example photo, CC0, Mikael Häggström (Wikimedia Commons)",
    "text.png": "scikit-image example photo, Wikipedia's File:Corner.png, public domain",
    "clock_motion.png": "scikit-image example photo, public domain, by the photographer Stefan van der Walt",
    "horse.png": "scikit-image sample drawing, CC0, Andreas Preuss (openclipart)",
    "brick.png": "scikit-image sample texture, CC0 (CC0Textures)",
    "grass.png": "scikit-image sample texture, CC0 (linolafett, DeviantArt)",
    "gravel.png": "scikit-image sample texture, CC0 (CC0Textures)",
    "china.jpg": "scikit-learn example photo, CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), "
    "danielbuechele on Flickr",
    "flower.jpg": "scikit-learn example photo, CC BY 2.0 (https://creativecommons.org/licenses/by/2.0/), "
    "vultilion on Flickr",
}


def _package_folder(package: str) -> Path | None:
    """Where a package keeps its sample images, or None if it is not installed."""
    try:
        if package == "skimage":
            import skimage

            return Path(skimage.__file__).parent / "data"
        import sklearn

        return Path(sklearn.__file__).parent / "datasets" / "images"
    except ImportError:
        return None


def example_photos() -> list[Path]:
    """Paths of scikit-image's bundled photos (a cat, an astronaut, a coffee cup, a motorbike, ...)."""
    folder = _package_folder("skimage")
    if folder is None:
        raise ImportError("example photos come from scikit-image: pip install scikit-image")
    return [folder / name for name in EXAMPLE_PHOTOS if (folder / name).is_file()]


def example_gallery() -> list[Path]:
    """The example photos and the other openly licensed photos of scikit-image and (if installed) scikit-learn."""
    photos = example_photos()
    for package, names in _GALLERY_EXTRAS.items():
        folder = _package_folder(package)
        if folder is not None:
            photos += [folder / name for name in names if (folder / name).is_file()]
    return photos


__all__ = ["PHOTO_CREDITS", "EXAMPLE_PHOTOS", "example_gallery", "example_photos"]
