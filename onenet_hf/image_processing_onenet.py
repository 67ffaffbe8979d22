"""Image loading and preprocessing for OneNet: any common image file -> normalised 260x260 RGB pixels."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling

ImageLike = str | os.PathLike | Image.Image | np.ndarray

# Pillow's own guard against decompression bombs is a warning below 2x this limit; we make it an error.
MAX_IMAGE_PIXELS = 89_478_485


class ImageLoadError(ValueError):
    """An input could not be turned into an RGB image; the message names the input and the reason."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit integer and float greyscale images -> 8-bit 'L', scaled by the type's range."""
    array = np.asarray(image)
    if image.mode.startswith("I;16") or array.dtype == np.uint16:
        scaled = array.astype(np.float32) / 65535.0
    elif image.mode == "F":
        lo, hi = float(array.min()), float(array.max())
        scaled = (array - lo) / (hi - lo) if hi > lo else np.zeros_like(array, dtype=np.float32)
    else:  # mode "I": 32-bit signed, usually holding 16-bit data
        scaled = array.astype(np.float32) / (65535.0 if array.max() > 255 else 255.0)
    return Image.fromarray((np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright 8-bit RGB from any PIL image: applies EXIF orientation, flattens alpha onto white."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "RGB" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(image: ImageLike) -> Image.Image:
    """Open a path, PIL image or HxW[xC] uint8 array as upright RGB, or raise ImageLoadError saying why."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ImageLoadError(f"array images must be uint8 HxW or HxWxC, got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        name = "image"
    elif isinstance(image, (str, os.PathLike)):
        name = str(image)
        if not Path(name).is_file():
            raise ImageLoadError(f"{name}: no such file")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(name)
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise Image.DecompressionBombError(f"{image.width}x{image.height} pixels")
                image.draft("RGB", (1024, 1024))  # JPEG: decode at reduced scale, far faster for huge photos
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageLoadError(
                f"{name}: image is too large ({error}); the limit is {MAX_IMAGE_PIXELS:,} pixels"
            ) from None
        except UnidentifiedImageError:
            raise ImageLoadError(f"{name}: not an image file (or an unsupported format)") from None
        except OSError as error:
            raise ImageLoadError(f"{name}: corrupt or truncated image ({error})") from None
    else:
        raise ImageLoadError(f"expected a path, PIL image or numpy array, got {type(image).__name__}")
    if min(image.size) < 2:
        raise ImageLoadError(f"{name}: image is too small ({image.width}x{image.height} pixels)")
    return to_rgb(image)


class OneNetImageProcessor(PilBackend):
    r"""
    Resizes to the backbone's 260x260 input and scales pixels as (x - 127) / 128, the EfficientNet-Lite
    convention (rescale by 1/255, then normalise with mean 127/255 and std 128/255).

    Paths, PIL images of any mode (EXIF-rotated, greyscale, RGBA, CMYK, 16-bit, palette) and uint8 arrays
    are all accepted and come out as RGB.
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    size = {"height": 260, "width": 260}
    default_to_square = True
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    image_mean = [127 / 255] * 3
    image_std = [128 / 255] * 3
    do_convert_rgb = True

    def preprocess(self, images, *args, **kwargs):
        """Load each input as upright RGB first (see `load_image`), then resize and normalise."""
        if isinstance(images, (list, tuple)):
            images = [load_image(image) for image in images]
        else:
            images = load_image(images)
        return super().preprocess(images, *args, **kwargs)


__all__ = ["OneNetImageProcessor", "ImageLoadError", "load_image", "to_rgb"]
