"""Use 1: caption images with beam search over the decoder conditioned on each image representation."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import torch
from transformers import GenerationConfig

from ..decoding import generate_beams
from ..errors import OneNetError
from ..images import ImageLike
from ..label_guidance import LABEL_THRESHOLD, check_label_threshold, guided_beams, vocabulary_tokens
from ..language.label_words import label_chances, label_pairs
from ..language.word_vectors import normalize_word
from ..modeling_onenet import check_generation_config
from ..options import check_text_length, check_weight
from ..processing_onenet import OneNetProcessor
from ..utils.messages import shorten


class CaptionBackend(Protocol):
    """What captioning needs from a network: PyTorch's `OneNetModel` and the ONNX backend both provide it."""

    config: object
    generation_config: GenerationConfig

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor: ...

    def initial_state(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, ...]: ...

    def decoder_step(
        self, input_ids: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]: ...


@dataclass(frozen=True)
class Caption:
    """A generated caption and its length-normalised log-probability (higher is more confident; with steering,
    the steering bias is part of it)."""

    text: str
    score: float


def caption_options(
    backend: CaptionBackend,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
) -> GenerationConfig:
    """The backend's generation config (the release's generation_config.json) with the caller's overrides."""
    options = copy.deepcopy(backend.generation_config)
    if beam_size is not None:
        options.num_beams = beam_size
    if length_penalty is not None:
        options.length_penalty = length_penalty
    if no_repeat_ngram_size is not None:
        options.no_repeat_ngram_size = no_repeat_ngram_size
    check_generation_config(options)
    return options


@torch.inference_mode()
def imagenet_token_bias(model, tokenizer, pooled_features: torch.Tensor, weight: float) -> torch.Tensor:
    """`weight` x the chance (B, vocab) that the backbone's ImageNet labels name each caption token: added to
    the decoder's log-probabilities, it steers captions of unfamiliar photos towards the objects the classifier
    sees, within one-vector conditioning (the image representation is unchanged)."""
    tokens = vocabulary_tokens(tokenizer)
    probabilities = model.get_imagenet_logits(pooled_features).softmax(-1)
    return weight * label_chances(probabilities, _token_label_pairs(tokens), len(tokens))


@cache
def _token_label_pairs(tokens: tuple[str, ...]) -> torch.Tensor:
    """`label_pairs` of a caption vocabulary, stemmed once per vocabulary rather than once per batch."""
    return label_pairs([normalize_word(token) if token.isalpha() else "" for token in tokens])


def sentence_token_ids(processor: OneNetProcessor, sentence: str, what: str = "sentence") -> list[int]:
    """`[BOS] words [EOS]` of a given sentence for the decoder to read; empty or over-long text, or a word outside
    the caption vocabulary (the decoder cannot say it), is an error naming it (`what` names the sentence)."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise OneNetError(f"the {what} is empty: give a few words")
    check_text_length(sentence, what)
    tokenizer = processor.tokenizer
    encoding = tokenizer(sentence, return_offsets_mapping=True)
    ids, spans = encoding["input_ids"], encoding["offset_mapping"]
    unknown = [sentence[start:end] for i, (start, end) in zip(ids, spans, strict=True) if i == tokenizer.unk_token_id]
    if unknown:
        listed = ", ".join(shorten(word) for word in dict.fromkeys(unknown))
        raise OneNetError(f"not in the caption vocabulary: {listed}; use other words for them")
    if len(ids) <= 2:
        raise OneNetError(f"the {what} {shorten(sentence)} has no words; give a few words")
    return ids


@torch.inference_mode()
def captions_from_embeddings(
    backend: CaptionBackend,
    processor: OneNetProcessor,
    image_embeds: torch.Tensor,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    token_bias: torch.Tensor | None = None,
    imagenet_probabilities: torch.Tensor | None = None,
    imagenet_labels: float = LABEL_THRESHOLD,
) -> list[Caption]:
    """Captions for image representations already computed (training-time evaluation uses this); `token_bias`
    steers the search (`imagenet_token_bias`); with the classifier's `imagenet_probabilities` (B, 1000) and
    `imagenet_labels` > 0, label words of at least that chance must be said (`label_guidance`)."""
    options = caption_options(backend, beam_size, length_penalty, no_repeat_ngram_size)
    if imagenet_probabilities is None or not imagenet_labels:
        hypotheses = generate_beams(backend, image_embeds, options, token_bias=token_bias)
    else:
        tokens = vocabulary_tokens(processor.tokenizer)
        hypotheses = guided_beams(
            backend, tokens, image_embeds, imagenet_probabilities, options, imagenet_labels, token_bias
        )
    texts = processor.batch_decode([h.token_ids for h in hypotheses], skip_special_tokens=True)
    return [Caption(text, h.score) for text, h in zip(texts, hypotheses, strict=True)]


@torch.inference_mode()
def caption(
    backend: CaptionBackend,
    processor: OneNetProcessor,
    images: ImageLike | Sequence[ImageLike],
    beam_size: int | None = None,
    length_penalty: float | None = None,
    no_repeat_ngram_size: int | None = None,
    batch_size: int = 16,
    imagenet_steering: float = 0.0,
    imagenet_labels: float = LABEL_THRESHOLD,
) -> list[Caption]:
    """Caption one image or a list (paths, PIL images or arrays), in input order; beam size, length penalty and
    n-gram blocking default to the model's generation config; `imagenet_labels` (a chance in (0, 1], 0 off) is
    the classifier's confidence from which a label's word must appear in the caption (`label_guidance`);
    `imagenet_steering` > 0 steers the search towards the words of the backbone's ImageNet labels
    (`imagenet_token_bias`).

    An unreadable image raises `ImageLoadError` naming it; call per image to skip bad ones.
    """
    options = (beam_size, length_penalty, no_repeat_ngram_size)
    caption_options(backend, *options)  # bad options fail before any image is read
    check_weight("imagenet_steering", imagenet_steering)
    check_label_threshold(imagenet_labels)
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    captions: list[Caption] = []
    for start in range(0, len(images), batch_size):
        pixel_values = processor(images=images[start : start + batch_size])["pixel_values"]
        token_bias = probabilities = None
        if imagenet_steering or imagenet_labels:
            image_embeds, pooled = backend.get_image_and_pooled_features(pixel_values)
            probabilities = backend.get_imagenet_logits(pooled).softmax(-1)
            if imagenet_steering:
                token_bias = imagenet_token_bias(backend, processor.tokenizer, pooled, imagenet_steering)
        else:
            image_embeds = backend.get_image_features(pixel_values)
        captions += captions_from_embeddings(
            backend, processor, image_embeds, *options, token_bias, probabilities, imagenet_labels
        )
    return captions


__all__ = [
    "sentence_token_ids",
    "Caption",
    "CaptionBackend",
    "caption",
    "caption_options",
    "captions_from_embeddings",
    "imagenet_token_bias",
]
