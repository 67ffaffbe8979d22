"""Use 5: similar images, by the image representation or focused on one ImageNet class."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..gallery import GalleryIndex, ImageMatch, cosine_matrix, embed_images, top_k_scores
from ..image_processing_onenet import ImageLike, load_image
from ..messages import shorten
from .tag import imagenet_labels
from .words import check_k


def _query_row(index: GalleryIndex, query: ImageLike | int) -> int | None:
    """Gallery row of a query given as a row number or a gallery path; None for an outside image."""
    if isinstance(query, (int, np.integer)):
        if not 0 <= query < len(index):
            raise IndexError(f"gallery item {query} does not exist; the gallery has {len(index)} images")
        return int(query)
    if isinstance(query, str) or hasattr(query, "__fspath__"):
        resolved = os.path.realpath(query)  # as the index stores paths; no error on a link loop
        if resolved in index.paths:
            return index.paths.index(resolved)
    return None


def class_focus_weights(model, imagenet_class: int | str) -> np.ndarray:
    """The ImageNet classifier's weights (1280,) of one class, given by index (e.g. 284) or name."""
    labels = imagenet_labels()
    if isinstance(imagenet_class, str):
        names = [label.lower() for label in labels]
        if imagenet_class.lower() not in names:
            raise ValueError(f"unknown ImageNet class {shorten(imagenet_class)}; give an index 0-999 or a class name")
        imagenet_class = names.index(imagenet_class.lower())
    if not 0 <= int(imagenet_class) < len(labels):
        raise ValueError(f"ImageNet class index must be 0-999, got {imagenet_class}")
    return model.backbone.net._fc.weight[int(imagenet_class)].detach().float().cpu().numpy()


@torch.inference_mode()
def similar_images(
    model,
    processor,
    index: GalleryIndex,
    query: ImageLike | int,
    k: int = 5,
    exact: bool | None = None,
    focus_class: int | str | None = None,
) -> list[ImageMatch]:
    """The k gallery images most like `query` (an image, a path, or a gallery row), itself left out.

    With `focus_class`, the backbone's pooled features are weighted by that ImageNet class's classifier
    weights and compared exactly, so only what the class detector looks at counts.
    """
    check_k(k)
    row = _query_row(index, query)
    if row is None:
        embedded = embed_images(model, processor, [load_image(query)])
        vector, pooled = embedded["image_embeds"][0], embedded["pooled_features"][0]
    else:
        vector, pooled = np.asarray(index.image_embeds[row]), np.asarray(index.pooled_features[row])
    if focus_class is None:
        return index.matches(index.nearest(vector, k, exact, exclude=[row])[0])
    weights = class_focus_weights(model, focus_class)
    gallery = np.asarray(index.pooled_features, dtype=np.float32) * weights
    scores = cosine_matrix((pooled.astype(np.float32) * weights)[None], gallery)[0]
    return index.matches(top_k_scores(scores, min(k, len(index)), row))


__all__ = ["class_focus_weights", "similar_images"]
