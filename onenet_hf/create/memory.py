"""How much memory optimising pixels takes, and the budget that refuses more up front: torch-free, so that the
command line checks a size before the model loads."""

from __future__ import annotations

import math

from ..errors import OneNetError
from ..options import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

MAX_ASPECT = 2  # a photo is optimised at size x size x this many pixels at most, whatever its shape
MIN_OPTIMIZED_SIDE = 32  # pixels: the backbone's stride; a thinner photo is squeezed, not made thinner
# Peak memory of one optimisation run grows with the pixels optimised at once (images x height x width; not with
# the steps): about MEMORY_BASE_MB for the process with the model loaded, plus MEMORY_MB_PER_MEGAPIXEL (a pass
# through the backbone with gradients). Fitted, rounded up, to `onenet visualize`, `dream` and `style` peaks
# (bench/speed/image_memory.py --commands, its `fit_points`: 698 MB at 260x260, 1,202 MB at 512x512, 1,848 MB at
# 2 x 512x512).
MEMORY_BASE_MB = 540
MEMORY_MB_PER_MEGAPIXEL = 2_700
# MB here are MiB, as ru_maxrss counts them. 1,400 MiB (1.47 GB) keeps a run under the stated 1.5 GB bound of one
# command (Limits): at 1,500 a dream at the largest size allowed peaked at 1,467 MiB, 1.54 GB.
MEMORY_BUDGET_MB = 1_400


def optimized_shape(width: int, height: int, size: int) -> tuple[int, int]:
    """The (width, height) a photo is optimised at: its short side `size`, unless that would pass MAX_ASPECT x
    size x size pixels (a photo longer than 2:1), then that many pixels, its short side not below
    MIN_OPTIMIZED_SIDE (a thinner photo is squeezed along its length). Memory grows with these pixels."""
    scale = min(size / min(width, height), math.sqrt(MAX_ASPECT * size * size / (width * height)))
    new_width, new_height = max(1, round(width * scale)), max(1, round(height * scale))
    short = min(new_width, new_height)
    if short < MIN_OPTIMIZED_SIDE:
        long = min(max(new_width, new_height), MAX_ASPECT * size * size // MIN_OPTIMIZED_SIDE)
        new_width, new_height = (long, MIN_OPTIMIZED_SIDE) if new_width > new_height else (MIN_OPTIMIZED_SIDE, long)
    return new_width, new_height


def memory_estimate_mb(width: int, height: int, images: int = 1) -> float:
    """The estimated peak memory (MiB) of optimising `images` images of width x height at once."""
    return MEMORY_BASE_MB + MEMORY_MB_PER_MEGAPIXEL * images * width * height / 1e6


def check_memory(size: int, photo: tuple[int, int] | None = None, images: int = 1) -> None:
    """Refuse, before any step, an optimisation at `size` whose estimated peak memory passes MEMORY_BUDGET_MB;
    what is optimised is size x size pixels, or a photo of `photo` (width, height) pixels at `optimized_shape`.
    The message names the largest size that fits, so the way out is one option."""
    width, height = _optimized_pixels(size, photo)
    estimate = memory_estimate_mb(width, height, images)
    if estimate <= MEMORY_BUDGET_MB:
        return
    count, more = (f" x {images} images", " or fewer images") if images > 1 else ("", "")
    raise OneNetError(
        f"size {size} ({width}x{height} pixels{count}) needs about {estimate:,.0f} MiB of memory, more than "
        f"the {MEMORY_BUDGET_MB:,} MiB one run may use: use size {largest_size(photo, images)} or less{more}"
    )


def largest_size(photo: tuple[int, int] | None = None, images: int = 1) -> int:
    """The largest size `check_memory` accepts for `images` images (or a photo of `photo` pixels)."""
    fits = (
        side
        for side in range(MAX_IMAGE_SIZE, MIN_IMAGE_SIZE - 1, -1)
        if memory_estimate_mb(*_optimized_pixels(side, photo), images) <= MEMORY_BUDGET_MB
    )
    return next(fits, MIN_IMAGE_SIZE)


def _optimized_pixels(size: int, photo: tuple[int, int] | None) -> tuple[int, int]:
    return (size, size) if photo is None else optimized_shape(*photo, size)


__all__ = ["MEMORY_BUDGET_MB", "check_memory", "largest_size", "memory_estimate_mb", "optimized_shape"]
