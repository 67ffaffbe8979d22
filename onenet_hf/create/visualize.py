"""Create, feature visualisation (`OneNet.visualize`, `onenet visualize`): an image that a part of the network
responds to most, found by optimising pixels (Olah, Mordvintsev and Schubert 2017).

A target is an ImageNet class of the backbone's classifier (its logit), a channel of a backbone stage (its mean
activation over the map; the head's 1280 by default) or a unit of the image representation (hidden_size wide,
512 in the shipped model; the vector every use starts from). The image is a decorrelated Fourier spectrum seen
through random jitter, scale and rotation (`image_optimization`). With several images, a diversity term
(Lucid's) pushes their styles apart: minus the mean cosine between the Gram matrices of one stage's
activations, so one target shows several of the things it responds to.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..errors import OneNetError
from ..language.label_words import imagenet_class_index
from ..modeling_onenet import OneNetModel
from ..options import VISUALIZE_STEPS as STEPS
from ..options import check_image_count, check_weight
from ..processing_onenet import OneNetProcessor
from .memory import check_memory
from .optimization import (
    FourierImage,
    Snapshot,
    backbone_input,
    check_image_size,
    check_learning_rate,
    check_seed,
    check_stage,
    check_steps,
    optimize,
    random_transform,
    stage_widths,
    with_gradients,
)

TARGET_KINDS = ("class", "channel", "unit")
LEARNING_RATE = 0.05
DIVERSITY_STAGE = "stage 4"  # the Gram matrices compared for diversity: mid-level texture and parts


@dataclass(frozen=True)
class VisualizationTarget:
    """What to excite: `kind` "class" (an ImageNet class), "channel" (of backbone `stage`) or "unit" (of the
    image representation), and its index."""

    kind: str
    index: int
    stage: str = "head"

    @property
    def label(self) -> str:
        return f"{self.stage} channel {self.index}" if self.kind == "channel" else f"{self.kind} {self.index}"


def visualization_target(
    model: OneNetModel,
    imagenet_class: int | str | None = None,
    channel: int | None = None,
    unit: int | None = None,
    stage: str = "head",
) -> VisualizationTarget:
    """Exactly one of an ImageNet class (index or name), a channel of `stage`, or a unit, checked against the
    network's sizes."""
    given = [
        name for name, value in (("class", imagenet_class), ("channel", channel), ("unit", unit)) if value is not None
    ]
    if len(given) != 1:
        raise OneNetError(f"give exactly one target: an ImageNet class, a channel or a unit (got {len(given)})")
    if imagenet_class is not None:
        return VisualizationTarget("class", imagenet_class_index(imagenet_class))
    if channel is not None:
        width = stage_widths(model)[check_stage(model, stage)]
        return VisualizationTarget("channel", _index("channel", channel, width, stage), stage)
    return VisualizationTarget("unit", _index("unit", unit, model.config.hidden_size, "the image representation"))


def _index(kind: str, value, size: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
        raise OneNetError(f"{kind} must be 0 to {size - 1} ({where} has {size}), got {value!r}")
    return value


def target_values(model: OneNetModel, target: VisualizationTarget, stages: dict[str, torch.Tensor]) -> torch.Tensor:
    """The target's value (B,) for each image, from its backbone stage activations (all stages and the head)."""
    if target.kind == "channel":
        return stages[target.stage][:, target.index].float().mean((1, 2))
    grid = stages["head"]
    if target.kind == "class":
        return model.get_imagenet_logits(model.get_pooled_features(grid.float()))[:, target.index]
    return model.get_image_features(backbone_features=grid)[:, target.index].float()


def gram_diversity(activations: torch.Tensor) -> torch.Tensor:
    """Minus the mean cosine similarity between the Gram matrices of different images' activations (B, C, H, W);
    0 for one image. Higher is more diverse."""
    batch = activations.shape[0]
    if batch < 2:
        return activations.new_zeros(())
    flat = activations.float().flatten(2)
    grams = torch.nn.functional.normalize((flat @ flat.transpose(1, 2)).flatten(1), dim=1)
    similarity = grams @ grams.T
    return -(similarity.sum() - similarity.diagonal().sum()) / (batch * (batch - 1))


@with_gradients
def visualize_steps(
    model: OneNetModel,
    processor: OneNetProcessor,
    target: VisualizationTarget,
    steps: int = STEPS,
    seed: int = 0,
    images: int = 1,
    diversity: float = 0.0,
    size: int = 260,
    learning_rate: float = LEARNING_RATE,
    snapshot_every: int = 0,
) -> Iterator[Snapshot]:
    """Optimise `images` Fourier-parameterised images to raise `target` (mean over images), plus `diversity` x
    `gram_diversity`; yields each step's `Snapshot`. The same seed gives the same images on one machine."""
    steps, seed, size = check_steps(steps), check_seed(seed), check_image_size(size)
    check_image_count(images)
    check_memory(size, images=images)
    check_weight("diversity", diversity)
    learning_rate = check_learning_rate(learning_rate)
    generator = torch.Generator().manual_seed(seed)
    image = FourierImage(size, images, generator).to(model.device)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    model.eval()

    def objective(pixels: torch.Tensor) -> torch.Tensor:
        stages = model.get_stage_features(backbone_input(model, random_transform(pixels, generator), mean, std))
        value = target_values(model, target, stages).mean()
        return value + diversity * gram_diversity(stages[DIVERSITY_STAGE]) if diversity else value

    yield from optimize(image, objective, steps, learning_rate, snapshot_every)


__all__ = [
    "STEPS",
    "TARGET_KINDS",
    "VisualizationTarget",
    "gram_diversity",
    "target_values",
    "visualization_target",
    "visualize_steps",
]
