"""Use 1: caption images with beam search over the decoder conditioned on each image representation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from ..image_processing_onenet import ImageLike
from ..processing_onenet import OneNetProcessor
from ..search import beam_search, check_beam_size


class CaptionBackend(Protocol):
    """What captioning needs from a network: PyTorch's `OneNetModel` and the ONNX backend both provide it."""

    config: object

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def initial_state(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def decoder_step(
        self, input_ids: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]: ...


@dataclass(frozen=True)
class Caption:
    """A generated caption and its length-normalised log-probability (higher is more confident)."""

    text: str
    score: float


@torch.inference_mode()
def captions_from_embeddings(
    backend: CaptionBackend,
    processor: OneNetProcessor,
    image_embeds: torch.Tensor,
    beam_size: int = 3,
    length_penalty: float = 1.0,
    max_length: int | None = None,
) -> list[Caption]:
    """Captions for image representations already computed (training-time evaluation uses this)."""
    config = backend.config
    hypotheses = beam_search(
        backend.decoder_step,
        backend.initial_state(image_embeds),
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        beam_size=beam_size,
        max_length=max_length or config.max_caption_length,
        length_penalty=length_penalty,
        suppress_token_ids=(config.pad_token_id, config.bos_token_id, processor.tokenizer.unk_token_id),
    )
    texts = processor.batch_decode([h.token_ids for h in hypotheses], skip_special_tokens=True)
    return [Caption(text, h.score) for text, h in zip(texts, hypotheses, strict=True)]


@torch.inference_mode()
def caption_images(
    backend: CaptionBackend,
    processor: OneNetProcessor,
    images: ImageLike | Sequence[ImageLike],
    beam_size: int = 3,
    length_penalty: float = 1.0,
    batch_size: int = 16,
) -> list[Caption]:
    """Caption one image or a list (paths, PIL images or arrays), in input order.

    An unreadable image raises `ImageLoadError` naming it; call per image to skip bad ones.
    """
    check_beam_size(beam_size)  # before any image is read
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    captions: list[Caption] = []
    for start in range(0, len(images), batch_size):
        pixel_values = processor(images=images[start : start + batch_size])["pixel_values"]
        image_embeds = backend.get_image_features(pixel_values)
        captions += captions_from_embeddings(backend, processor, image_embeds, beam_size, length_penalty)
    return captions


__all__ = ["Caption", "CaptionBackend", "caption_images", "captions_from_embeddings"]
