"""A dataset split as the image evaluators read it: its captioned images and, on the PyTorch backend, their cached
backbone features (computed once, so repeated evaluations are cheap)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage, read_split
from ..data.feature_cache import cached_backbone_features
from ..errors import OneNetError
from ..modeling_onenet import OneNetModel

if TYPE_CHECKING:
    from ..onenet import OneNet


def split_inputs(
    net: OneNet, task: str, data_dir: str | Path | None, split: str, data_format: str, cache_dir: str | Path
) -> tuple[list[CaptionedImage], np.ndarray | None, dict]:
    """The split's examples, their backbone feature grids (None on the ONNX backend) and the record's header."""
    if not data_dir:
        raise OneNetError(f"a data folder is required for the {task} task (--data-dir)")
    examples = read_split(data_dir, split, data_format)
    torch_backend = isinstance(net.model, OneNetModel)
    if not torch_backend and task != "captions":
        raise OneNetError(f"the {task} task runs on the PyTorch backend; leave out --backend onnx")
    grids = None
    if torch_backend:
        grids = cached_backbone_features(
            net.model, net.processor.image_processor, [e.path for e in examples], cache_dir
        )
    return examples, grids, {"task": task, "dataset": Path(data_dir).name, "split": split, "images": len(examples)}


def image_inputs_from_features(
    model: OneNetModel, grids: np.ndarray, batch_size: int = 250
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled backbone features and image representations of cached feature grids."""
    pooled, representations = [], []
    with torch.inference_mode():
        for start in tqdm(range(0, len(grids), batch_size), desc="image representations", unit="batch"):
            grid = torch.from_numpy(np.array(grids[start : start + batch_size])).float()
            pooled.append(model.get_pooled_features(grid))
            representations.append(model.get_image_features(backbone_features=grid))
    return torch.cat(pooled), torch.cat(representations)


__all__ = ["split_inputs"]
