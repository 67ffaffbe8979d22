"""Create, DeepDream (`OneNet.dream`, `onenet dream IMAGE`): amplify what one backbone stage sees in a photo.

Gradient ascent on the photo's pixels raises the stage's activation (the mean of its positive part: how strongly
the stage fires; a stage's output can be negative, so its plain mean is no measure of that). It runs over
octaves, from the photo shrunk by `octave_scale` per octave up to its own size; the detail an octave adds is
carried up to the next, as in Mordvintsev's DeepDream. Each step is a normalised gradient step of size
`strength` / 100 on pixels in [0, 1], taken through a random shift so no fixed grid pattern builds up.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..images import ImageLike, load_image
from ..modeling_onenet import OneNetModel
from ..options import DREAM_OCTAVES as OCTAVES
from ..options import DREAM_STAGE as STAGE
from ..options import DREAM_STEPS as STEPS
from ..options import DREAM_STRENGTH as STRENGTH
from ..options import check_octaves, check_weight
from ..processing_onenet import OneNetProcessor
from .memory import check_memory
from .optimization import (
    Snapshot,
    backbone_input,
    check_image_size,
    check_seed,
    check_stage,
    check_steps,
    from_image,
    with_gradients,
)

OCTAVE_SCALE = 1.4
SHIFT = 16  # pixels of random roll per step, at most


def stage_activation(activations: torch.Tensor) -> torch.Tensor:
    """How strongly a stage fires on each image (B,): the mean of the positive part of its activations."""
    return activations.float().clamp(min=0).mean((1, 2, 3))


def measure_stage(model: OneNetModel, processor: OneNetProcessor, pixels: torch.Tensor, stage: str) -> torch.Tensor:
    """`stage_activation` of pixels (B, 3, H, W) in [0, 1]."""
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    with torch.no_grad():
        return stage_activation(model.get_stage_features(backbone_input(model, pixels, mean, std))[stage])


@with_gradients
def dream_steps(
    model: OneNetModel,
    processor: OneNetProcessor,
    image: ImageLike,
    stage: str = STAGE,
    steps: int = STEPS,
    strength: float = STRENGTH,
    octaves: int = OCTAVES,
    size: int = 260,
    seed: int = 0,
    snapshot_every: int = 0,
) -> Iterator[Snapshot]:
    """DeepDream on `image` (resized to `optimized_shape`: its short side `size`, its pixels bounded); yields a
    `Snapshot` per step (the steps are shared out over the octaves), whose objective is the stage's activation on
    the current octave's image."""
    stage, steps, seed = check_stage(model, stage), check_steps(steps), check_seed(seed)
    size = check_image_size(size)
    check_weight("strength", strength)
    check_octaves(octaves, steps)
    picture = load_image(image)
    check_memory(size, picture.size)
    photo = from_image(picture, size).to(model.device)
    generator = torch.Generator().manual_seed(seed)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    model.eval()
    shapes = [
        tuple(max(32, round(side / OCTAVE_SCALE**k)) for side in photo.shape[-2:]) for k in reversed(range(octaves))
    ]
    per_octave = [steps // octaves + (k < steps % octaves) for k in range(octaves)]
    detail = torch.zeros(1, 3, *shapes[0], device=photo.device)
    step = 0
    for shape, octave_steps in zip(shapes, per_octave, strict=True):
        base = F.interpolate(photo, size=shape, mode="bilinear", align_corners=False, antialias=True)
        detail = F.interpolate(detail, size=shape, mode="bilinear", align_corners=False)
        pixels = (base + detail).clamp(0, 1)
        for _ in range(octave_steps):
            step += 1
            dy, dx = (int(v) for v in torch.randint(-SHIFT, SHIFT + 1, (2,), generator=generator))
            shifted = pixels.roll((dy, dx), dims=(2, 3)).requires_grad_(True)
            value = stage_activation(model.get_stage_features(backbone_input(model, shifted, mean, std))[stage])
            (gradient,) = torch.autograd.grad(value.sum(), shifted)
            gradient = gradient.roll((-dy, -dx), dims=(2, 3))
            pixels = (pixels + strength / 100 * gradient / gradient.abs().mean().clamp(min=1e-12)).clamp(0, 1)
            done = step == steps
            keep = done or (snapshot_every and step % snapshot_every == 0)
            yield Snapshot(step, steps, float(value.detach()), pixels.detach().cpu() if keep else None)
        detail = pixels - base


__all__ = ["OCTAVES", "STAGE", "STEPS", "STRENGTH", "dream_steps", "measure_stage", "stage_activation"]
