"""Use 2: tag images with words (any frequent GloVe word, seen in captions or not) and ImageNet labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import torch

from ..image_processing_onenet import ImageLike
from ..processing_onenet import OneNetProcessor
from ..word_vectors import glove_vectors, normalize_word, stopwords
from .words import ScoredWord, check_k


@dataclass(frozen=True)
class ImageTags:
    """Tags of one image: words from the tag head, and the backbone's ImageNet labels, best first."""

    words: list[ScoredWord]
    imagenet: list[ScoredWord]


@cache
def tag_vocabulary(size: int = 20_000) -> tuple[str, ...]:
    """Candidate tags: GloVe's `size` most frequent words, alphabetic, 3+ letters, no stop-words, one per stem."""
    seen, words = set(), []
    for word in glove_vectors().words[:size]:
        if word.isalpha() and len(word) >= 3 and word not in stopwords():
            stem = normalize_word(word)
            if stem not in seen:
                seen.add(stem)
                words.append(word)
    return tuple(words)


def tag_word_features(model, tokenizer, words: Sequence[str]) -> torch.Tensor:
    """What the tag head sees of GloVe words: the unit GloVe vector, log(1 + frequency rank) / 10, and the
    decoder's learned embedding where the caption vocabulary (`tokenizer`) has the word."""
    glove = glove_vectors()
    rows = glove.ids(words)
    rank = np.log1p(np.asarray(rows, dtype=np.float32))[:, None] / 10.0
    vectors = torch.from_numpy(np.concatenate([glove.vectors[rows], rank], axis=1))
    input_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(words)))
    input_ids[input_ids == tokenizer.unk_token_id] = model.config.pad_token_id  # the decoder does not know it
    return model.get_tag_word_features(vectors, input_ids)


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in classifier order (first name of each synset), shipped as package data."""
    text = resources.files("onenet_hf").joinpath("resources/imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    return tuple(names.split(",")[0].strip() for _, _, names in rows)


class Tagger:
    """Scores every tag-vocabulary word against images; the word side is computed once per model."""

    def __init__(self, model, tokenizer, vocabulary: Sequence[str] | None = None):
        self.model = model
        self.words = list(vocabulary or tag_vocabulary(model.config.tag_vocabulary_size))
        with torch.inference_mode():
            self.word_embeds = model.get_tag_word_embeds(tag_word_features(model, tokenizer, self.words))

    @torch.inference_mode()
    def scores(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Cosine (B, V) between images' tag-space vectors and every vocabulary word."""
        return self.model.get_tag_image_embeds(image_embeds) @ self.word_embeds.T

    def top_words(self, image_embeds: torch.Tensor, k: int) -> list[list[ScoredWord]]:
        scores = self.scores(image_embeds)
        top = scores.topk(min(k, len(self.words)), dim=1)
        return [
            [ScoredWord(self.words[i], float(s)) for i, s in zip(ids.tolist(), vals.tolist(), strict=True)]
            for ids, vals in zip(top.indices, top.values, strict=True)
        ]


@torch.inference_mode()
def tag_images(
    model,
    processor: OneNetProcessor,
    images: ImageLike | Sequence[ImageLike],
    k: int = 5,
    tagger: Tagger | None = None,
    batch_size: int = 16,
) -> list[ImageTags]:
    """The k best tags and ImageNet labels (softmax probabilities) for one image or a list, in input order."""
    check_k(k)
    tagger = tagger or Tagger(model, processor.tokenizer)
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    labels, results = imagenet_labels(), []
    for start in range(0, len(images), batch_size):
        pixel_values = processor(images=images[start : start + batch_size])["pixel_values"]
        grid = model.get_backbone_features(pixel_values)
        words = tagger.top_words(model.get_image_features(backbone_features=grid), k)
        probabilities = model.backbone.imagenet_logits(model.get_pooled_features(grid)).softmax(-1)
        top = probabilities.topk(min(k, len(labels)), dim=1)
        for image_words, ids, values in zip(words, top.indices, top.values, strict=True):
            imagenet = [ScoredWord(labels[i], float(p)) for i, p in zip(ids.tolist(), values.tolist(), strict=True)]
            results.append(ImageTags(image_words, imagenet))
    return results


__all__ = ["ImageTags", "Tagger", "imagenet_labels", "tag_images", "tag_vocabulary", "tag_word_features"]
