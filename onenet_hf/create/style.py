"""Create, style transfer (`OneNet.style`, `onenet style CONTENT STYLE`): the content of one photo in the style
of another, with the backbone's features (Gatys, Ecker and Bethge 2016).

Content is a deep stage's activations (where things are); style is the Gram matrices of several stages' channels
(which textures and colours occur together, wherever they are). The pixels start from the content photo and
Adam lowers `content_weight` x content loss + `style_weight` x style loss. Both losses are divided by their values
for the style photo itself (the content loss of the style photo, the style loss of the content photo), so the
weights are comparable across photos and a content loss below 1 means the result keeps more of the content's
layout than the style photo has.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..images import ImageLike, load_image
from ..modeling_onenet import OneNetModel
from ..options import CONTENT_WEIGHT, STYLE_WEIGHT, check_weight
from ..options import STYLE_STEPS as STEPS
from ..processing_onenet import OneNetProcessor
from .memory import check_memory
from .optimization import (
    PixelImage,
    Snapshot,
    backbone_input,
    check_image_size,
    check_learning_rate,
    check_steps,
    from_image,
    optimize,
    with_gradients,
)

CONTENT_STAGE = "stage 5"
STYLE_STAGES = ("stem", "stage 1", "stage 2", "stage 3", "stage 4")
# 0.05 left one pair of bench/quality/create_quality.py at 87% style-loss fall, 0.02 all three >= 90%
LEARNING_RATE = 0.02


def gram(activations: torch.Tensor) -> torch.Tensor:
    """Channel co-activation (B, C, C) of activations (B, C, H, W), divided by the number of positions."""
    flat = activations.float().flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[-1]


@dataclass(frozen=True)
class StyleLosses:
    """A stylised image's content and style losses, each relative to its value for the style photo itself."""

    content: float
    style: float


class StyleObjective:
    """Minus the weighted content and style losses of pixels, against a content and a style photo."""

    def __init__(self, model: OneNetModel, processor: OneNetProcessor, content: torch.Tensor, style: torch.Tensor):
        self.model = model
        self.mean, self.std = processor.image_processor.image_mean, processor.image_processor.image_std
        with torch.no_grad():
            content_stages, style_stages = self.stages(content), self.stages(style)
            self.content_target = content_stages[CONTENT_STAGE]
            self.style_targets = {name: gram(style_stages[name]) for name in STYLE_STAGES}
            self.content_scale, _ = self.raw_losses(style_stages)  # the style photo's own content loss
            _, self.style_scale = self.raw_losses(content_stages)  # the content photo's style loss

    def stages(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.get_stage_features(backbone_input(self.model, pixels, self.mean, self.std))

    def raw_losses(self, stages: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = stages[CONTENT_STAGE]
        if features.shape[-2:] != self.content_target.shape[-2:]:  # a style photo of another shape
            features = F.interpolate(features, size=self.content_target.shape[-2:], mode="bilinear")
        content = F.mse_loss(features.float(), self.content_target.float())
        style = sum(F.mse_loss(gram(stages[name]), self.style_targets[name]) for name in STYLE_STAGES)
        return content, style / len(STYLE_STAGES)

    def losses(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Content and style losses of pixels, relative to the style photo's content loss and the content
        photo's style loss."""
        content, style = self.raw_losses(self.stages(pixels))
        return content / self.content_scale.clamp(min=1e-12), style / self.style_scale.clamp(min=1e-12)


@with_gradients
def style_steps(
    model: OneNetModel,
    processor: OneNetProcessor,
    content: ImageLike,
    style: ImageLike,
    steps: int = STEPS,
    content_weight: float = CONTENT_WEIGHT,
    style_weight: float = STYLE_WEIGHT,
    size: int = 260,
    learning_rate: float = LEARNING_RATE,
    snapshot_every: int = 0,
) -> Iterator[Snapshot]:
    """Stylise `content` (resized to `optimized_shape`: short side `size`, pixels bounded) with `style` (resized
    the same); yields a `Snapshot` per step whose objective is minus the weighted relative losses. Deterministic:
    no random draws. The memory check reads the content photo's shape, so it is loaded first."""
    steps, size = check_steps(steps), check_image_size(size)
    check_weight("content weight", content_weight)
    check_weight("style weight", style_weight)
    learning_rate = check_learning_rate(learning_rate)
    content = load_image(content)
    check_memory(size, content.size)
    content_pixels = from_image(content, size).to(model.device)
    style_pixels = from_image(style, size).to(model.device)
    model.eval()
    objective = StyleObjective(model, processor, content_pixels, style_pixels)

    def value(pixels: torch.Tensor) -> torch.Tensor:
        content_loss, style_loss = objective.losses(pixels)
        return -(content_weight * content_loss + style_weight * style_loss)

    yield from optimize(PixelImage(content_pixels), value, steps, learning_rate, snapshot_every)


def style_losses(
    model: OneNetModel, processor: OneNetProcessor, result: ImageLike, content: ImageLike, style: ImageLike, size: int
) -> StyleLosses:
    """The relative content and style losses of a result against its content and style photos (the bench's
    check: style loss falls by 90%+ while the content loss stays below 1, the style photo's own)."""
    objective = StyleObjective(model, processor, from_image(content, size), from_image(style, size))
    with torch.no_grad():
        content_loss, style_loss = objective.losses(from_image(result, size).to(model.device))
    return StyleLosses(float(content_loss), float(style_loss))


__all__ = ["StyleLosses", "gram", "style_losses", "style_steps"]
