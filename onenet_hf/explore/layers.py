"""Explore, layer by layer (`OneNet.layer_activations`, `onenet layers`): what the frozen EfficientNet-Lite2
backbone sees of one image at each of its stages, from edges to parts to objects.

Reads the backbone's activation maps stage by stage (`OneNetModel.get_stage_features`): the stem, 7 stages
(runs of blocks at one resolution and width) and the head, whose 9x9 grid the image representation pools. Each
stage is shown by its strongest channels, ranked by mean activation over the map; for display each map is scaled
to its own minimum and maximum, so the grids show where a channel fires, not how strongly against the others.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..images import ImageLike
from ..options import CHANNELS, MAX_CHANNELS, check_channels
from ..utils.ranking import top_k
from .sheets import Tile, contact_sheet, heat_map


@dataclass(frozen=True, eq=False)
class StageActivations:
    """One backbone stage's strongest channels for an image: their numbers and mean activations, strongest
    first, and their activation maps (channels, height, width); `stage_channels` is how many the stage has."""

    name: str
    number: int
    stage_channels: int
    channels: tuple[int, ...]
    means: tuple[float, ...]
    maps: np.ndarray

    @property
    def resolution(self) -> tuple[int, int]:
        """Height and width of the stage's activation maps."""
        return self.maps.shape[1], self.maps.shape[2]

    @property
    def file_name(self) -> str:
        """The PNG `onenet layers` writes for the stage, in stage order: "00-stem.png" ... "08-head.png"."""
        return f"{self.number:02d}-{self.name.replace(' ', '-')}.png"

    def to_image(self) -> Image.Image:
        """A grid of the channels' maps (each scaled to its own range), with the stage's name, resolution and
        each channel's number and mean activation."""
        height, width = self.resolution
        tiles = [
            Tile(heat_map(activations), (f"channel {channel}", f"mean {mean:.3f}"))
            for channel, mean, activations in zip(self.channels, self.means, self.maps, strict=True)
        ]
        titles = (
            f"{self.name}: {self.stage_channels} channels at {height}x{width}",
            f"the {len(self.channels)} strongest by mean activation; each map scaled to its own range",
        )
        return contact_sheet(tiles, math.ceil(math.sqrt(len(tiles))), titles)


@torch.inference_mode()
def layer_activations(model, processor, image: ImageLike, channels: int = CHANNELS) -> list[StageActivations]:
    """Each backbone stage of one image, in order from the stem to the head, with its `channels` strongest
    channels. An unreadable image raises `ImageLoadError` naming it."""
    check_channels(channels)
    stages = model.get_stage_features(processor(images=[image])["pixel_values"])
    results = []
    for number, (name, features) in enumerate(stages.items()):
        maps = features[0].float().cpu().numpy()
        strongest, means = top_k(maps.mean((1, 2)), channels)
        results.append(
            StageActivations(
                name,
                number,
                len(maps),
                tuple(int(c) for c in strongest[0]),
                tuple(float(m) for m in means[0]),
                maps[strongest[0]],
            )
        )
    return results


__all__ = ["CHANNELS", "MAX_CHANNELS", "StageActivations", "check_channels", "layer_activations"]
