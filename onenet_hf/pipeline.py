"""`OneNet`: the model and its processor behind one object with a method per use."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .image_processing_onenet import ImageLike
from .modeling_onenet import OneNetModel
from .processing_onenet import OneNetProcessor
from .uses.caption import Caption, CaptionBackend, caption_images


class OneNet:
    """A loaded OneNet checkpoint, ready for inference.

    `model` is the PyTorch `OneNetModel` (eval mode, float32) or, with `backend="onnx"`, an
    `OnnxOneNetBackend` running the exported graphs; every use works with either.
    """

    def __init__(self, model: OneNetModel | CaptionBackend, processor: OneNetProcessor):
        self.model, self.processor = model, processor
        if isinstance(model, OneNetModel):
            model.eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        device: str | torch.device | None = None,
        backend: str = "torch",
        onnx_dir: str | os.PathLike | None = None,
        onnx_variant: str = "fp32",
    ) -> OneNet:
        """Load a folder written by `onenet train` (or `save_pretrained`); never touches the network.

        `backend="onnx"` runs the graphs `onenet export` wrote (default `path/onnx`), `onnx_variant`
        `"fp32"`, `"int8"` (CPU) or `"fp16"` (GPU).
        """
        processor = OneNetProcessor.from_pretrained(path)
        if backend == "onnx":
            from .onnx_backend import OnnxOneNetBackend

            return cls(OnnxOneNetBackend(path, onnx_dir, onnx_variant), processor)
        if backend != "torch":
            raise ValueError(f"unknown backend {backend!r}; choose 'torch' or 'onnx'")
        model = OneNetModel.from_pretrained(path, dtype=torch.float32)
        return cls(model.to(device or "cpu"), processor)

    def save_pretrained(self, path: str | os.PathLike, half_precision_weights: bool = False) -> None:
        """Write model and processor as an HF folder; optionally store weights in fp16 (loaded back as fp32)."""
        if not isinstance(self.model, OneNetModel):
            raise TypeError("only a PyTorch-backed OneNet can be saved; the ONNX graphs are exported from one")
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        if half_precision_weights:
            weights_file = Path(path) / "model.safetensors"
            weights = {k: v.half() if v.is_floating_point() else v for k, v in load_file(weights_file).items()}
            save_file(weights, weights_file.with_suffix(".tmp"), metadata={"format": "pt"})
            os.replace(weights_file.with_suffix(".tmp"), weights_file)
            weights_file.chmod(0o644)

    def caption(
        self, images: ImageLike | Sequence[ImageLike], beam_size: int = 3, length_penalty: float = 1.0
    ) -> list[Caption]:
        """One `Caption(text, score)` per image, in input order."""
        return caption_images(self.model, self.processor, images, beam_size, length_penalty)


__all__ = ["OneNet"]
