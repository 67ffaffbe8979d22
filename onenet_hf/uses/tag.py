"""Use 2: tag images with words (any frequent GloVe word, seen in captions or not) and ImageNet labels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

import torch

from ..decoding import sample_sequences
from ..errors import OneNetError
from ..images import ImageLike
from ..language.label_words import imagenet_labels, label_chances, label_pairs
from ..language.word_vectors import glove_vectors, normalize_word, stopwords
from ..modeling_onenet import never_generated_token_ids
from ..options import CAPTION_SAMPLES, CAPTION_WEIGHT, IMAGENET_WEIGHT, check_caption_samples, check_weight
from ..processing_onenet import OneNetProcessor
from ..utils.ranking import check_k
from .words import ScoredWord

if TYPE_CHECKING:
    from ..onnx.backend import OnnxOneNetBackend
    from .caption import CaptionBackend

CHANCE_FLOOR = 1e-3  # added to the decoder's and the ImageNet labels' chance of a word before the log


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
    """The tag head's features of GloVe words (`OneNetModel.get_tag_word_features`): looks up each word's unit
    GloVe vector, its GloVe frequency rank, and its caption token id (`tokenizer`; padding for an unknown word)."""
    glove = glove_vectors()
    rows = glove.ids(words)
    input_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(words)))
    input_ids[input_ids == tokenizer.unk_token_id] = model.config.pad_token_id  # the decoder does not know it
    vectors = torch.from_numpy(glove.vectors[rows]).to(model.device)
    return model.get_tag_word_features(vectors, torch.tensor(rows), input_ids.to(model.device))


def combine_tag_scores(
    head_log_probs: torch.Tensor,
    caption_chances: torch.Tensor | None,
    label_chances: torch.Tensor | None,
    caption_weight: float,
    imagenet_weight: float,
) -> torch.Tensor:
    """Scores (B, V) from the three votes (see `Tagger`); a vote that is None or weighted 0 is left out."""
    scores = head_log_probs
    for chances, weight in ((caption_chances, caption_weight), (label_chances, imagenet_weight)):
        if chances is not None and weight:
            scores = scores + weight * (chances + CHANCE_FLOOR).log()
    return scores


class Tagger:
    """Scores every tag-vocabulary word against images; the word side is computed once per model.

    A word's score is the tag head's log-probability (softmax over the vocabulary of the scaled cosines) plus
    `caption_weight` x the log of the chance that the decoder says the word along `caption_samples` captions
    sampled for the image (`caption_chances`), plus `imagenet_weight` x the log of the chance that the frozen
    ImageNet classifier names it (`label_chances`); CHANCE_FLOOR keeps words either never says from -inf. The
    decoder knows how people describe a photo; the head knows every GloVe word; the classifier knows 1,000
    objects the captions rarely show (a cat, a ram, a trolleybus). With `caption_samples=0` and
    `imagenet_weight=0` the head alone ranks. `decoder` samples the captions (default the model; the ONNX
    backend's decoder graphs give the same captions faster).
    """

    def __init__(
        self,
        model,
        tokenizer,
        vocabulary: Sequence[str] | None = None,
        caption_samples: int = CAPTION_SAMPLES,
        caption_weight: float = CAPTION_WEIGHT,
        batch_size: int = 32,
        imagenet_weight: float = IMAGENET_WEIGHT,
        decoder: CaptionBackend | None = None,
    ):
        check_caption_samples(caption_samples)
        check_weight("caption_weight", caption_weight)
        check_weight("imagenet_weight", imagenet_weight)
        self.model, self.tokenizer = model, tokenizer
        self.decoder = decoder or model  # what samples the captions: the model, or its ONNX decoder graphs
        self.words = list(vocabulary or tag_vocabulary(model.config.tag_vocabulary_size))
        self.caption_samples, self.caption_weight, self.batch_size = caption_samples, caption_weight, batch_size
        self.imagenet_weight = imagenet_weight
        with torch.inference_mode():
            self.word_embeds = model.get_tag_word_embeds(tag_word_features(model, tokenizer, self.words))
        column_of_stem: dict[str, int] = {}
        for column, word in enumerate(self.words):
            column_of_stem.setdefault(normalize_word(word), column)
        token_columns = torch.full((len(tokenizer),), len(self.words), dtype=torch.long)  # len(words): no tag word
        for token, token_id in tokenizer.get_vocab().items():
            token_columns[token_id] = column_of_stem.get(normalize_word(token), len(self.words))
        # the few columns caption tokens reach, and each token's place among them (keeps caption_chances small)
        self.reached_columns, self.token_places = token_columns.unique(return_inverse=True)
        self.label_pairs = label_pairs([normalize_word(word) for word in self.words])

    @torch.inference_mode()
    def head_log_probs(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """The tag head's log-softmax (B, V) over the vocabulary."""
        return self.model.get_tag_logits(image_embeds, self.word_embeds).log_softmax(-1)

    @torch.inference_mode()
    def caption_chances(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """Chance (B, V) that the decoder says each word (any form with its stem) along a caption: the mean over
        `caption_samples` sampled captions of 1 - prod over their steps of (1 - p(word))."""
        config, words = self.model.config, len(self.words)
        samples = sample_sequences(
            self.decoder.decoder_step,
            self.decoder.initial_state(image_embeds),
            bos_token_id=config.bos_token_id,
            eos_token_id=config.eos_token_id,
            num_samples=self.caption_samples,
            max_length=config.max_caption_length,
            suppress_token_ids=never_generated_token_ids(config),
        )
        token_misses = samples.token_log_misses  # (B, samples, tokens)
        places, columns = self.token_places.to(token_misses.device), self.reached_columns.to(token_misses.device)
        misses = token_misses.new_zeros(*token_misses.shape[:2], len(columns)).index_add_(2, places, token_misses)
        chances = token_misses.new_zeros(len(token_misses), words + 1)
        chances[:, columns] = -torch.expm1(misses).mean(1)
        return chances[:, :words]

    @torch.inference_mode()
    def label_chances(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """Chance (B, V) that the ImageNet classifier names each word: the summed softmax probability of the
        classes with the word in one of their names ("tabby cat" and "Egyptian cat" both count for "cat")."""
        probabilities = self.model.get_imagenet_logits(pooled_features).softmax(-1)
        return label_chances(probabilities, self.label_pairs, len(self.words))

    def scores(self, image_embeds: torch.Tensor, pooled_features: torch.Tensor | None = None) -> torch.Tensor:
        """Score (B, V) of every vocabulary word for each image, higher is better (see the class docstring).
        `pooled_features` (B, 1280), the images' mean-pooled backbone features, feed the ImageNet term."""
        if self.imagenet_weight and pooled_features is None:
            raise OneNetError("the ImageNet term needs the images' pooled_features; or build with imagenet_weight=0")
        scores = []
        for start in range(0, len(image_embeds), self.batch_size):
            batch = image_embeds[start : start + self.batch_size]
            chances = self.caption_chances(batch) if self.caption_samples and self.caption_weight else None
            labels = None
            if self.imagenet_weight:
                labels = self.label_chances(pooled_features[start : start + self.batch_size])
            weights = (self.caption_weight, self.imagenet_weight)
            scores.append(combine_tag_scores(self.head_log_probs(batch), chances, labels, *weights))
        return torch.cat(scores)

    def top_words(
        self, image_embeds: torch.Tensor, k: int, pooled_features: torch.Tensor | None = None
    ) -> list[list[ScoredWord]]:
        """The k best-scored words of each image (`scores`), best first."""
        scores = self.scores(image_embeds, pooled_features)
        top = scores.topk(min(k, len(self.words)), dim=1)
        return [
            [ScoredWord(self.words[i], float(s)) for i, s in zip(ids.tolist(), vals.tolist(), strict=True)]
            for ids, vals in zip(top.indices, top.values, strict=True)
        ]


@torch.inference_mode()
def tag(
    model,
    processor: OneNetProcessor,
    images: ImageLike | Sequence[ImageLike],
    k: int = 5,
    tagger: Tagger | None = None,
    batch_size: int = 16,
    image_encoder: OnnxOneNetBackend | None = None,
) -> list[ImageTags]:
    """The k best tags and ImageNet labels (softmax probabilities) for one image or a list, in input order.
    `image_encoder`: an ONNX backend whose export gives pooled features runs the backbone (faster on CPU)."""
    check_k(k)
    tagger = tagger or Tagger(model, processor.tokenizer)
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    labels, results = imagenet_labels(), []
    for start in range(0, len(images), batch_size):
        pixel_values = processor(images=images[start : start + batch_size])["pixel_values"]
        if image_encoder is not None:
            image_embeds, pooled = image_encoder.get_image_and_pooled_features(pixel_values)
            image_embeds, pooled = image_embeds.to(model.device), pooled.to(model.device)
        else:
            grid = model.get_backbone_features(pixel_values)
            image_embeds, pooled = model.get_image_features(backbone_features=grid), model.get_pooled_features(grid)
        words = tagger.top_words(image_embeds, k, pooled)
        probabilities = model.get_imagenet_logits(pooled).softmax(-1)
        top = probabilities.topk(min(k, len(labels)), dim=1)
        for image_words, ids, values in zip(words, top.indices, top.values, strict=True):
            imagenet = [ScoredWord(labels[i], float(p)) for i, p in zip(ids.tolist(), values.tolist(), strict=True)]
            results.append(ImageTags(image_words, imagenet))
    return results


__all__ = [
    "CAPTION_SAMPLES",
    "CAPTION_WEIGHT",
    "IMAGENET_WEIGHT",
    "ImageTags",
    "Tagger",
    "combine_tag_scores",
    "tag",
    "tag_vocabulary",
    "tag_word_features",
]
