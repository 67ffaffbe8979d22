"""Loading images, for every use: any common image file, PIL image or array -> upright RGB bounded by area, and
the network's pixel values. Torch- and transformers-free, so `onenet index` on an exported gallery encoder starts
in a fraction of a second (the processor, `image_processing_onenet`, uses these same functions)."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import OneNetError

IMAGE_SIZE = 260  # EfficientNet-Lite2's input side: the image processor's and the config's default

ImageLike = str | os.PathLike | Image.Image | np.ndarray

# Pixels decoded per image. The network sees 260x260, so larger images are reduced right after decoding;
# the limit bounds the decoded frame itself (about 4 bytes a pixel), checked from the header before decoding.
MAX_IMAGE_PIXELS = 40_000_000
# JPEGs decode at 1/2, 1/4 or 1/8 scale (`draft`), so the limit applies to the drafted size and a JPEG's full
# size may go up to Pillow's own decompression-bomb guard (a warning above this; we make it an error).
MAX_JPEG_PIXELS = Image.MAX_IMAGE_PIXELS
# Every loaded image is bounded by area, whatever its shape: reduced (JPEG: drafted) by whole factors to about
# this many pixels (under 4 times as many), and to at most MAX_LOADED_SIDE on a side, so what every use does
# next (overlays, optimisation, thumbnails) costs a bounded amount however thin the image.
REDUCED_PIXELS = 1024 * 1024
MAX_LOADED_SIDE = 16_384


class ImageLoadError(OneNetError):
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
    """Upright 8-bit RGB from any PIL image: applies EXIF orientation, flattens alpha onto white.

    An image that is already upright RGB (e.g. what `load_image` returned) comes back as it is, not copied, so
    the processor does not load again what a caller has loaded."""
    if image.mode == "RGB" and "transparency" not in image.info and image.getexif().get(0x0112, 1) == 1:
        return image
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


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _reduction(width: int, height: int) -> tuple[int, int]:
    """Whole factors (x, y) that bring an image to about REDUCED_PIXELS: the same on both sides, except that a
    side is never reduced below 2 pixels and a side longer than MAX_LOADED_SIDE is reduced to fit it."""
    factor = max(1, math.isqrt(width * height // REDUCED_PIXELS))
    x, y = min(factor, max(1, width // 2)), min(factor, max(1, height // 2))
    return max(x, -(-width // MAX_LOADED_SIDE)), max(y, -(-height // MAX_LOADED_SIDE))


def _reduce(image: Image.Image) -> Image.Image:
    """A decoded image box-reduced by whole factors (`_reduction`), strip by strip of about a megapixel so no
    full-size copy is made (`reduce` premultiplies RGBA into one; palette images need converting).

    The EXIF orientation is applied first so it survives; the few edge pixels past a multiple of a factor go.
    """
    x, y = _reduction(*image.size)
    if x == y == 1:
        return image
    if image.getexif().get(0x0112, 1) != 1:
        image = ImageOps.exif_transpose(image)
        x, y = _reduction(*image.size)
    mode = {"1": "L", "P": "RGBA", "I;16": "I", "I;16B": "I", "I;16L": "I", "I;16N": "I"}.get(image.mode, image.mode)
    width, height = image.width // x * x, image.height // y * y
    reduced = Image.new(mode, (width // x, height // y))
    step = y * max(1, REDUCED_PIXELS // (width * y))
    for top in range(0, height, step):
        strip = image.crop((0, top, width, min(top + step, height))).convert(mode)
        reduced.paste(strip.reduce((x, y)), (0, top // y))
    reduced.info = dict(image.info)
    return reduced


def _too_large(name: str, size: str) -> ImageLoadError:
    return ImageLoadError(
        f"{name}: image is too large ({size}); the limit is {_megapixels(MAX_IMAGE_PIXELS)} "
        f"(JPEG: {_megapixels(MAX_JPEG_PIXELS)})"
    )


def load_image(image: ImageLike) -> Image.Image:
    """Open a path, PIL image or HxW[xC] uint8 array as upright RGB, or raise ImageLoadError saying why.

    Files are checked against MAX_IMAGE_PIXELS from their header before decoding. Every image comes out bounded
    by area (`_reduction`: about a megapixel, a side at most MAX_LOADED_SIDE), so one file costs at most about
    200 MB while it is decoded, however large or thin it is, and what a use does with it next is bounded too.
    """
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ImageLoadError(f"array images must be uint8 HxW or HxWxC, got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    if isinstance(image, Image.Image):
        name, size = "image", image.size
        image = _reduce(image)
    elif isinstance(image, (str, os.PathLike)):
        name = str(image)
        if Path(name).is_dir():
            raise ImageLoadError(f"{name}: is a directory, not an image file")
        if not Path(name).exists():
            leads_nowhere = Path(name).is_symlink()  # broken, or a loop
            raise ImageLoadError(f"{name}: {'a link that leads to no file' if leads_nowhere else 'no such file'}")
        if not Path(name).is_file():  # a FIFO or a device: reading it could block or never end
            raise ImageLoadError(f"{name}: not a regular file")
        try:
            with warnings.catch_warnings():  # a decoder's asides (an ICO frame of another size, a TIFF read short)
                warnings.simplefilter("ignore")  # are not the user's to read; its bomb warning is an error
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(name)  # reads the header only
                width, height = size = image.size
                x, y = _reduction(width, height)
                image.draft("RGB", (width // x, height // y))  # JPEG: decode at 1/2 to 1/8 scale, not below this
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise _too_large(name, f"{width}x{height} = {_megapixels(width * height)}")
                image.load()
            image = _reduce(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            # Pillow's own check, in Image.open (its sentence is long and names its limit, not ours)
            raise _too_large(name, f"over {_megapixels(MAX_JPEG_PIXELS)}") from None
        except UnidentifiedImageError:
            raise ImageLoadError(f"{name}: not an image file (or an unsupported format)") from None
        except OSError as error:
            raise ImageLoadError(f"{name}: corrupt or truncated image ({error})") from None
        except (ImageLoadError, MemoryError, RecursionError):  # ours, or the machine's: not the file's fault
            raise
        except Exception as error:  # noqa: BLE001 - a decoder's own words for damaged or hostile data: ValueError
            # (a PNG text chunk inflating past MAX_TEXT_CHUNK), IndexError (a truncated QOI), BLPFormatError, ...
            raise ImageLoadError(f"{name}: damaged image ({type(error).__name__}: {error})") from None
    else:
        raise ImageLoadError(f"expected a path, PIL image or numpy array, got {type(image).__name__}")
    if min(image.size) < 2:  # the file's own size in the message, and why when it was fine before the reduction
        thin = "" if image.size == size else "; too thin: under 2 pixels across once reduced to about a megapixel"
        raise ImageLoadError(f"{name}: image is too small ({size[0]}x{size[1]} pixels{thin})")
    return to_rgb(image)


def pixel_values(images: list[Image.Image]) -> np.ndarray:
    """(N, 3, 260, 260) float32 inputs of upright RGB images: bicubic resize, then (x - 127) / 128."""
    batch = np.stack([np.asarray(image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BICUBIC)) for image in images])
    pixels = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32)  # transposed as bytes: cheaper
    pixels -= 127.0
    pixels *= 1 / 128  # a power of two: the same floats as dividing
    return pixels


__all__ = [
    "IMAGE_SIZE",
    "ImageLike",
    "ImageLoadError",
    "MAX_IMAGE_PIXELS",
    "MAX_JPEG_PIXELS",
    "MAX_LOADED_SIDE",
    "REDUCED_PIXELS",
    "load_image",
    "pixel_values",
    "to_rgb",
]
