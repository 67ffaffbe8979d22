"""Optimising pixels against the frozen network: what feature visualisation, imagined captions, DeepDream and
style transfer share.

An image is either a decorrelated Fourier spectrum (`FourierImage`, Olah, Mordvintsev and Schubert 2017: every
frequency scaled by 1/f so coarse and fine structure learn at similar rates, colours through ImageNet's colour
correlation, a sigmoid into [0, 1]) or plain pixels (`PixelImage`, for edits of a photo). Objectives see it
through small random jitter, scale and rotation (`random_transform`), which keeps the result an image the network
still reads after a crop rather than adversarial noise. `optimize` runs Adam on the image and yields its
`Snapshot`s, so a command can show a progress bar and the Space can stream intermediate images.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..errors import OneNetError
from ..images import ImageLike, load_image
from ..modeling_onenet import OneNetModel
from ..options import MAX_STEPS, check_image_size, check_seed, check_steps
from .memory import optimized_shape

# The square root of ImageNet's RGB colour correlation (from its SVD), as Lucid uses it: a parameter vector
# moves along decorrelated colour directions, scaled so that the largest column has norm 1.
COLOR_CORRELATION_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOR_CORRELATION = COLOR_CORRELATION_SQRT / COLOR_CORRELATION_SQRT.norm(dim=0).max()


SnapshotSteps = Callable[..., Iterator["Snapshot"]]


def with_gradients(steps_function: SnapshotSteps) -> SnapshotSteps:
    """Run a generator of `Snapshot`s with autograd on, whatever the caller's grad mode (`torch.inference_mode()`
    included): torch's grad-mode decorators re-enter around each resumption of a generator and give the caller
    back its own mode at each yield, which a `with` block inside the generator would not."""
    return torch.inference_mode(False)(torch.enable_grad()(steps_function))


def check_learning_rate(rate: float) -> float:
    """Adam's step size on the image parameters: a number above 0 and at most 1."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise OneNetError(f"learning rate must be a number above 0 and at most 1, got {str(rate)[:20]}")
    return float(rate)


class FourierImage(nn.Module):
    """`images` images (B, 3, size, size) in [0, 1] parameterised by a decorrelated, 1/f-scaled Fourier spectrum."""

    def __init__(self, size: int, images: int = 1, generator: torch.Generator | None = None, decay_power: float = 1):
        super().__init__()
        self.size = size
        frequencies = torch.sqrt(torch.fft.fftfreq(size)[:, None] ** 2 + torch.fft.rfftfreq(size)[None] ** 2)
        scale = 1.0 / frequencies.clamp(min=1.0 / size) ** decay_power * size
        self.register_buffer("scale", scale)
        self.spectrum = nn.Parameter(0.01 * torch.randn(2, images, 3, *scale.shape, generator=generator))

    def forward(self) -> torch.Tensor:
        spectrum = torch.complex(self.spectrum[0], self.spectrum[1]) * self.scale
        image = torch.fft.irfft2(spectrum, s=(self.size, self.size)) / 4.0
        return torch.sigmoid(torch.einsum("bchw,dc->bdhw", image, COLOR_CORRELATION.to(image)))


class PixelImage(nn.Module):
    """Images (B, 3, H, W) whose pixels are the parameters, starting from given ones; kept in [0, 1]."""

    def __init__(self, pixels: torch.Tensor):
        super().__init__()
        self.pixels = nn.Parameter(pixels.clone())

    def forward(self) -> torch.Tensor:
        return self.pixels

    def clamp_(self) -> None:
        with torch.no_grad():
            self.pixels.clamp_(0.0, 1.0)


def random_transform(
    pixels: torch.Tensor, generator: torch.Generator, jitter: float = 0.06, scale: float = 0.1, degrees: float = 10.0
) -> torch.Tensor:
    """Each image shifted by up to `jitter` of its side, scaled by 1 +- `scale` and turned by up to `degrees`,
    one affine resampling with mirrored borders: the transformation robustness of feature visualisation."""
    batch = pixels.shape[0]
    draws = torch.rand(batch, 4, generator=generator).to(pixels.device) * 2 - 1  # uniform in [-1, 1]
    angle = draws[:, 0] * math.radians(degrees)
    zoom = 1.0 + draws[:, 1] * scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    shift = draws[:, 2:] * jitter * 2  # affine_grid's coordinates span 2 per side
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(pixels.dtype), list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def crop_and_resize(pixels: torch.Tensor, keep: float, generator: torch.Generator) -> torch.Tensor:
    """A random square crop keeping `keep` of each side, resized back: a check that a visualisation is still read
    the same after a small change of framing (adversarial noise is not)."""
    size = pixels.shape[-1]
    side = max(1, round(size * keep))
    top, left = (int(v) for v in torch.randint(size - side + 1, (2,), generator=generator))
    crop = pixels[..., top : top + side, left : left + side]
    return F.interpolate(crop, size=pixels.shape[-2:], mode="bilinear", align_corners=False, antialias=True)


def backbone_input(model: OneNetModel, pixels: torch.Tensor, image_mean, image_std) -> torch.Tensor:
    """Pixels in [0, 1] normalised as the image processor normalises them, on the model's device and dtype."""
    mean = torch.tensor(image_mean, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(image_std, device=pixels.device).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(model.device, model.dtype)


def to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) pixels in [0, 1] -> RGB images."""
    array = (pixels.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(image)) for image in array]


def from_image(image: ImageLike, size: int | None = None) -> torch.Tensor:
    """An image (path, PIL, array) as (1, 3, H, W) pixels in [0, 1], loaded within the loader's pixel budget
    (`load_image`); `size` resizes it to `optimized_shape`, so its pixels are bounded however long it is."""
    picture = load_image(image)
    if size is not None:
        picture = picture.resize(optimized_shape(*picture.size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].contiguous()


@dataclass(frozen=True, eq=False)
class Snapshot:
    """Where an optimisation stands after `step` of `steps`: the objective (higher is better) at that step and,
    at snapshot steps and after the last, the images (`pixels`, (B, 3, H, W) in [0, 1]; None in between)."""

    step: int
    steps: int
    objective: float
    pixels: torch.Tensor | None = None

    @property
    def images(self) -> list[Image.Image]:
        if self.pixels is None:
            raise OneNetError(f"step {self.step} is not a snapshot step: it carries no images")
        return to_pil(self.pixels)


def optimize(
    image: nn.Module,
    objective: Callable[[torch.Tensor], torch.Tensor],
    steps: int,
    learning_rate: float,
    snapshot_every: int = 0,
) -> Iterator[Snapshot]:
    """Adam steps raising `objective(pixels)` (a scalar tensor); yields a `Snapshot` after every step, with the
    images every `snapshot_every` steps (0: never) and after the last. `PixelImage`s stay in [0, 1]. Only the
    image's gradients are taken (`torch.autograd.grad`): the network's weights keep their `requires_grad` and no
    `.grad` is written to them."""
    parameters = list(image.parameters())
    optimizer = torch.optim.Adam(parameters, lr=learning_rate)
    for step in range(1, steps + 1):
        value = objective(image())
        gradients = torch.autograd.grad(-value, parameters)
        for parameter, gradient in zip(parameters, gradients, strict=True):
            parameter.grad = gradient
        optimizer.step()
        if isinstance(image, PixelImage):
            image.clamp_()
        pixels = None
        if step == steps or (snapshot_every and step % snapshot_every == 0):
            with torch.no_grad():
                pixels = image().detach().cpu()
        yield Snapshot(step, steps, float(value.detach()), pixels)


def last(snapshots: Iterator[Snapshot], description: str, progress: bool = True) -> Snapshot:
    """Run an optimisation to its end behind a tqdm bar and return its final snapshot."""
    from tqdm.auto import tqdm

    final = None
    with tqdm(total=None, desc=description, unit="step", disable=not progress) as bar:
        for snapshot in snapshots:
            bar.total = snapshot.steps
            bar.update(1)
            bar.set_postfix(objective=f"{snapshot.objective:.3f}")
            final = snapshot
    if final is None or final.pixels is None:
        raise OneNetError(f"{description}: the optimisation ended without its final images")
    return final


def stage_widths(model: OneNetModel) -> dict[str, int]:
    """Each backbone stage's number of channels, by name (`OneNetModel.get_stage_features`)."""
    probe = torch.zeros(1, 3, 64, 64, device=model.device, dtype=model.dtype)
    with torch.no_grad():
        return {name: features.shape[1] for name, features in model.get_stage_features(probe).items()}


def check_stage(model: OneNetModel, stage: str) -> str:
    """A backbone stage's name (`stage_widths`), or an error listing them."""
    widths = stage_widths(model)
    if stage not in widths:
        raise OneNetError(f"unknown stage {stage!r}; choose one of {', '.join(widths)}")
    return stage


__all__ = [
    "FourierImage",
    "MAX_STEPS",
    "PixelImage",
    "Snapshot",
    "check_image_size",
    "check_learning_rate",
    "check_seed",
    "check_stage",
    "check_steps",
    "crop_and_resize",
    "from_image",
    "optimize",
    "random_transform",
    "stage_widths",
    "to_pil",
    "with_gradients",
]
