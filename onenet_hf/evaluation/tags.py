"""Tag quality: precision@k against the words of each image's captions; `TagEvaluator` runs it on a split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage
from ..errors import OneNetError
from ..language.word_vectors import content_words, normalize_word
from ..modeling_onenet import OneNetModel
from ..processing_onenet import OneNetProcessor
from ..uses.tag import CAPTION_SAMPLES, CAPTION_WEIGHT, IMAGENET_WEIGHT, Tagger
from .splits import SplitEvaluator, image_inputs_from_features

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


@dataclass(kw_only=True)
class TagEvaluator(SplitEvaluator):
    """Tag precision@5 of a split against its captions' words; primary metric `tag_precision@5`. The default
    votes are the shipped tagger's; `caption_samples=0, imagenet_weight=0` measures the tag head alone."""

    primary_metric: ClassVar[str] = "tag_precision@5"
    caption_samples: int = CAPTION_SAMPLES
    caption_weight: float = CAPTION_WEIGHT
    imagenet_weight: float = IMAGENET_WEIGHT

    def __call__(self, net: OneNet) -> dict:
        examples, grids, result = self.inputs(net, "tags")
        tagging = {
            "caption_samples": self.caption_samples, "caption_weight": self.caption_weight,
            "imagenet_weight": self.imagenet_weight,
        }  # fmt: skip
        metrics = evaluate_tags(net.model, net.processor, grids, examples, 5, **tagging)
        return result | tagging | {"metrics": metrics}
