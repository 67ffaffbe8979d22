"""Tag quality: precision@k against the words of each image's captions; `TagEvaluator` runs it on a split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage
from ..data.feature_cache import DEFAULT_CACHE_DIR
from ..errors import OneNetError
from ..language.word_vectors import content_words, normalize_word
from ..modeling_onenet import OneNetModel
from ..processing_onenet import OneNetProcessor
from ..uses.tag import CAPTION_SAMPLES, CAPTION_WEIGHT, IMAGENET_WEIGHT, Tagger
from .splits import image_inputs_from_features, split_inputs

if TYPE_CHECKING:
    from ..onenet import OneNet


def tag_precision(predicted: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Share of predicted tags whose stem (`normalize_word`) occurs among the stems of the image's captions."""
    if len(predicted) != len(references):
        raise OneNetError(f"got {len(predicted)} tag lists but {len(references)} reference sets")
    hits = []
    for tags, captions in zip(predicted, references, strict=True):
        stems = {normalize_word(word) for caption in captions for word in content_words(caption)}
        hits += [normalize_word(tag) in stems for tag in tags]
    return float(np.mean(hits)) if hits else float("nan")


def evaluate_tags(
    model: OneNetModel,
    processor: OneNetProcessor,
    grids: np.ndarray,
    examples: list[CaptionedImage],
    k: int = 5,
    caption_samples: int = CAPTION_SAMPLES,
    caption_weight: float = CAPTION_WEIGHT,
    imagenet_weight: float = IMAGENET_WEIGHT,
) -> dict:
    """Tag precision@k on cached backbone features, the share of tags the captions never used (words outside
    the caption vocabulary), and the tags of the first images; `caption_samples=0` with `imagenet_weight=0`
    measures the tag head alone."""
    pooled, representations = image_inputs_from_features(model, grids)
    tagger = Tagger(model, processor.tokenizer, None, caption_samples, caption_weight, imagenet_weight=imagenet_weight)
    batches = range(0, len(representations), tagger.batch_size)
    tags = [
        [w.word for w in words]
        for start in tqdm(batches, desc="tags", unit="batch")
        for words in tagger.top_words(
            representations[start : start + tagger.batch_size], k, pooled[start : start + tagger.batch_size]
        )
    ]
    caption_vocabulary = processor.tokenizer.get_vocab()
    unseen = sum(word not in caption_vocabulary for words in tags for word in words) / sum(map(len, tags))
    return {
        f"tag_precision@{k}": tag_precision(tags, [e.captions for e in examples]),
        "share_outside_caption_vocabulary": unseen,
        "examples": tags[:5],
    }


class TagEvaluator:
    """Tag precision@5 of a split against its captions' words; primary metric `tag_precision@5`. The default
    votes are the shipped tagger's; `caption_samples=0, imagenet_weight=0` measures the tag head alone."""

    primary_metric = "tag_precision@5"

    def __init__(
        self,
        data_dir: str | Path,
        split: str = "dev",
        data_format: str = "flickr8k",
        *,
        cache_dir: str | Path = DEFAULT_CACHE_DIR,
        caption_samples: int = CAPTION_SAMPLES,
        caption_weight: float = CAPTION_WEIGHT,
        imagenet_weight: float = IMAGENET_WEIGHT,
    ):
        self.data = (data_dir, split, data_format, cache_dir)
        self.tagging = {
            "caption_samples": caption_samples, "caption_weight": caption_weight, "imagenet_weight": imagenet_weight,
        }  # fmt: skip

    def __call__(self, net: OneNet) -> dict:
        examples, grids, result = split_inputs(net, "tags", *self.data)
        return (
            result
            | self.tagging
            | {"metrics": evaluate_tags(net.model, net.processor, grids, examples, 5, **self.tagging)}
        )
