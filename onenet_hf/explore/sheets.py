"""Contact sheets: labelled tiles in a grid under a few title lines, as the explore uses draw them, and PNGs
written atomically. Pillow only (its bundled font), so the pictures need no optional dependency."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from ..errors import OneNetError
from ..images import ImageLike, ImageLoadError, load_image
from ..utils.atomic_files import check_output_file

TILE = 128  # side of a tile's picture, in pixels
GAP = 6  # between tiles and around the grid
LINE = 16  # height of a label line under a tile
TITLE_LINE = 22  # height of a title line above the grid
BACKGROUND, INK, FAINT = (255, 255, 255), (20, 20, 20), (110, 110, 110)
# Colour ramp of activation maps (0 -> 1): near-black, crimson, pale yellow, close to matplotlib's "inferno".
HEAT_RAMP = ("#000004", "#bc3754", "#fcffa4")


@dataclass(frozen=True)
class Tile:
    """A picture of a grid and the label lines printed under it."""

    picture: Image.Image
    labels: tuple[str, ...]


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` pixels (no system font is assumed)."""
    return ImageFont.load_default(size=size)


def sheet_size(tiles: int, columns: int, label_lines: int, title_lines: int) -> tuple[int, int]:
    """Width and height of the sheet `contact_sheet` draws for these counts (tests and callers can predict it)."""
    rows = -(-tiles // columns)
    width = columns * (TILE + GAP) + GAP
    height = title_lines * TITLE_LINE + rows * (TILE + label_lines * LINE + GAP) + GAP
    return width, height


def contact_sheet(tiles: Sequence[Tile], columns: int, titles: Sequence[str] = ()) -> Image.Image:
    """Title lines, then the tiles row by row (each picture fitted into a TILE square, its labels under it);
    text too long for the sheet is cut with "..."."""
    label_lines = max((len(tile.labels) for tile in tiles), default=0)
    sheet = Image.new("RGB", sheet_size(len(tiles), columns, label_lines, len(titles)), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for line, title in enumerate(titles):
        size = 15 if line == 0 else 13
        draw.text((GAP, 3 + line * TITLE_LINE), _fit(title, font(size), sheet.width - 2 * GAP), INK, font(size))
    top = len(titles) * TITLE_LINE
    for number, tile in enumerate(tiles):
        x = GAP + (number % columns) * (TILE + GAP)
        y = top + GAP + (number // columns) * (TILE + label_lines * LINE + GAP)
        picture = ImageOps.contain(tile.picture, (TILE, TILE))
        sheet.paste(picture, (x + (TILE - picture.width) // 2, y + (TILE - picture.height) // 2))
        for line, label in enumerate(tile.labels):
            colour = INK if line == 0 else FAINT
            draw.text((x, y + TILE + 1 + line * LINE), _fit(label, font(12), TILE), colour, font(12))
    return sheet


def _fit(text: str, typeface, width: int) -> str:
    """`text` cut (with "...") to fit `width` pixels."""
    if typeface.getlength(text) <= width:
        return text
    while text and typeface.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def thumbnail(image: ImageLike) -> Image.Image:
    """An image reduced to fit a tile; one that cannot be read (moved, deleted, corrupt) is a grey tile that says
    so, as a gallery image may have gone since it was indexed."""
    try:
        picture = load_image(image)
    except ImageLoadError:
        picture = Image.new("RGB", (TILE, TILE), (200, 200, 200))
        ImageDraw.Draw(picture).text((8, TILE // 2 - 8), "unreadable", INK, font(13))
        return picture
    picture.thumbnail((TILE, TILE))
    return picture


def heat_map(activations: np.ndarray, side: int = TILE) -> Image.Image:
    """A 2-D activation map scaled to 0-1 by its own minimum and maximum, coloured by HEAT_RAMP and enlarged
    (nearest neighbour, so each activation stays one visible cell) to `side` pixels; a flat map is black."""
    activations = np.asarray(activations, dtype=np.float32)
    low, high = float(activations.min()), float(activations.max())
    scaled = (activations - low) / (high - low) if high > low else np.zeros_like(activations)
    grey = Image.fromarray((scaled * 255.0 + 0.5).astype(np.uint8), mode="L")
    black, mid, white = HEAT_RAMP
    return ImageOps.colorize(grey, black=black, mid=mid, white=white).resize((side, side), Image.Resampling.NEAREST)


def save_image(image: Image.Image, path: str | os.PathLike, format: str = "PNG", **options) -> Path:
    """Write `image` at `path` atomically in `format` with Pillow's `options` (a temporary file beside it, then
    os.replace), so a reader never sees half a picture and a failed write leaves no stray file; a path that
    cannot be written (`check_output_file`) or a failed write (a full disk) is one OneNetError."""
    target = check_output_file(path, "output file")
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        image.save(tmp, format=format, **options)
        os.replace(tmp, target)
    except OSError as error:
        raise OneNetError(f"cannot write {path}: {error.strerror or error}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return Path(path)


__all__ = [
    "GAP",
    "LINE",
    "TILE",
    "TITLE_LINE",
    "Tile",
    "contact_sheet",
    "heat_map",
    "save_image",
    "sheet_size",
    "thumbnail",
]
