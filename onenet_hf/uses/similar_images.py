"""Use 5: similar images (`OneNet.similar_images`, `onenet similar-images`): by the image representation, or
by the pooled backbone features weighted towards one ImageNet class (class focus)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import OneNetError
from ..fingerprint import file_hash
from ..gallery.ann import unit_rows
from ..gallery.embedding import embed_images
from ..gallery.index import GalleryIndex, ImageMatch
from ..images import ImageLike
from ..language.label_words import imagenet_class_index
from ..utils.ranking import check_k

if TYPE_CHECKING:
    from ..onnx.backend import OnnxOneNetBackend


def gallery_row(index: GalleryIndex, query: ImageLike | int) -> int | None:
    """Gallery row of a query given as a row number, or as a path to a gallery file (the file itself, a link to
    it, or a copy with the same bytes); None for an image from outside the gallery."""
    if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
        if not 0 <= query < len(index):
            raise OneNetError(f"gallery item {query} does not exist; the gallery has {len(index)} images")
        return int(query)
    if isinstance(query, str) or hasattr(query, "__fspath__"):
        resolved = os.path.realpath(query)  # as the index stores paths; no error on a link loop
        if index.row_of(path=resolved) is not None:
            return index.row_of(path=resolved)
        if os.path.isfile(resolved):
            try:
                return index.row_of(content=file_hash(resolved))
            except OSError:
                return None  # unreadable: loading it will say why
    return None


@torch.inference_mode()
def similar_images(
    model,
    processor,
    index: GalleryIndex,
    query: ImageLike | int,
    k: int = 5,
    exact: bool | None = None,
    focus_class: int | str | None = None,
    image_encoder: OnnxOneNetBackend | None = None,
) -> list[ImageMatch]:
    """The k gallery images most like `query` (an image, a path, or a gallery row), itself left out.

    With `focus_class`, pooled backbone features are weighted by that class's classifier weights
    (`OneNetModel.get_class_focus_weights`) and compared exactly, so only what the class detector looks at counts.
    `image_encoder` (an ONNX backend with pooled features) embeds an image from outside the gallery.
    """
    check_k(k)
    weights = None
    if focus_class is not None:  # a bad class fails before any image is read
        weights = model.get_class_focus_weights(imagenet_class_index(focus_class)).float().cpu().numpy()
    row = gallery_row(index, query)
    if row is None:
        embedded = embed_images(model, processor, [query], image_encoder)
        vector, pooled = embedded["image_embeds"][0], embedded["pooled_features"][0]
    else:
        vector, pooled = index.rows("image_embeds", [row])[0], index.rows("pooled_features", [row])[0]
    if weights is None:
        return index.matches(index.nearest(vector, k, exact, exclude=[row])[0])
    # exact, a block at a time: the weights differ per class, so no ANN file can hold the focused vectors
    focused = unit_rows((pooled.astype(np.float32) * weights)[None])[0]
    return index.matches(index.scan("pooled_features", lambda rows: unit_rows(rows * weights) @ focused, k, row))


__all__ = ["gallery_row", "similar_images"]
