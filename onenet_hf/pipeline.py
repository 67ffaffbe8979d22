"""`OneNet`: the model and its processor behind one object with a method per use."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .image_processing_onenet import ImageLike
from .modeling_onenet import OneNetModel
from .processing_onenet import OneNetProcessor
from .uses.caption import Caption, caption_images


class OneNet:
    """A loaded OneNet checkpoint, ready for inference (eval mode, float32, CPU or the given device)."""

    def __init__(self, model: OneNetModel, processor: OneNetProcessor):
        self.model, self.processor = model.eval(), processor

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device | None = None) -> OneNet:
        """Load a folder written by `onenet train` (or `save_pretrained`); never touches the network."""
        model = OneNetModel.from_pretrained(path, dtype=torch.float32)
        return cls(model.to(device or "cpu"), OneNetProcessor.from_pretrained(path))

    def caption(
        self, images: ImageLike | Sequence[ImageLike], beam_size: int = 3, length_penalty: float = 1.0
    ) -> list[Caption]:
        """One `Caption(text, score)` per image, in input order."""
        return caption_images(self.model, self.processor, images, beam_size, length_penalty)


__all__ = ["OneNet"]
