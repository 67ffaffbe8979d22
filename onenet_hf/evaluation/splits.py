"""A dataset split as the image evaluators read it: its captioned images and, on the PyTorch backend, their cached
backbone features (computed once, so repeated evaluations are cheap)."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage, read_split
from ..data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
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


@dataclass
class SplitEvaluator:
    """What every image evaluator is given: a dataset split (`data_dir`, `split`, `data_format`, as `read_split`
    reads it) and where its backbone features are cached; each subclass adds its keyword-only options."""

    data_dir: str | Path
    split: str = "dev"
    data_format: str = "flickr8k"
    _: KW_ONLY
    cache_dir: str | Path = DEFAULT_CACHE_DIR

    def inputs(self, net: OneNet, task: str) -> tuple[list[CaptionedImage], np.ndarray | None, dict]:
        """The split's examples, feature grids and record header (`split_inputs`)."""
        return split_inputs(net, task, self.data_dir, self.split, self.data_format, self.cache_dir)


__all__ = ["SplitEvaluator", "split_inputs"]
