"""Caption quality: pycocoevalcap BLEU-1..4, METEOR, ROUGE-L and CIDEr, how varied captions are, and which COCO objects
they name that the photo lacks (CHAIR); `CaptionEvaluator` runs it on a split as `onenet evaluate` does."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from ..data.datasets import CaptionedImage, read_coco_objects
from ..errors import OneNetError
from ..label_guidance import LABEL_THRESHOLD, check_label_threshold
from ..language.word_vectors import normalize_word
from ..modeling_onenet import OneNetModel
from ..options import check_weight
from ..processing_onenet import OneNetProcessor
from ..uses.caption import caption_options, captions_from_embeddings, imagenet_token_bias
from .splits import SplitEvaluator

if TYPE_CHECKING:
    from ..onenet import OneNet


CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def caption_metrics(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], metrics: Sequence[str] = CAPTION_METRICS
) -> dict[str, float]:
    """Corpus scores of one hypothesis per image against its references, PTB-tokenised as in COCO.

    METEOR needs Java; the other metrics are pure Python.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    unknown = set(metrics) - set(CAPTION_METRICS)
    if unknown:
        raise OneNetError(f"unknown metrics {sorted(unknown)}; choose from {CAPTION_METRICS}")
    gts, res = _ptb_tokenized(references, hypotheses)
    scores: dict[str, float] = {}
    if any(m.startswith("BLEU") for m in metrics):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n}": float(b) for n, b in enumerate(bleu, 1)})
    scorers: Mapping[str, type] = {"METEOR": Meteor, "ROUGE-L": Rouge, "CIDEr": Cider}
    for name, scorer in scorers.items():
        if name in metrics:
            scores[name] = float(scorer().compute_score(gts, res)[0])
    return {name: scores[name] for name in metrics}


def _ptb_tokenized(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[dict, dict]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if len(references) != len(hypotheses):
        raise OneNetError(f"got {len(references)} reference sets but {len(hypotheses)} hypotheses")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
    return gts, tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})


def cider_per_image(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> np.ndarray:
    """Each image's CIDEr (their mean is `caption_metrics`' corpus CIDEr): for paired comparisons of two
    captioners on the same images, e.g. a bootstrap of the difference."""
    from pycocoevalcap.cider.cider import Cider

    return np.asarray(Cider().compute_score(*_ptb_tokenized(references, hypotheses))[1], dtype=np.float64)


@torch.inference_mode()
def evaluate_on_features(
    model: OneNetModel,
    processor: OneNetProcessor,
    features: np.ndarray,
    examples: list[CaptionedImage],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    batch_size: int = 100,
    metrics: tuple[str, ...] = ("BLEU-4", "CIDEr"),
    no_repeat_ngram_size: int | None = None,
    imagenet_steering: float = 0.0,
    imagenet_labels: float = 0.0,
) -> tuple[dict[str, float], list[str]]:
    """Caption metrics of the model on cached backbone features of `examples`, and the captions; n-gram
    blocking defaults to the model's generation config; `imagenet_steering` > 0 steers the search towards the
    words of the ImageNet labels (`imagenet_token_bias`); `imagenet_labels` > 0 makes confident labels' words
    appear (`label_guidance`; off here by default, as training-time evaluation wants the decoder alone)."""
    model.eval()
    texts: list[str] = []
    for start in range(0, len(examples), batch_size):
        grid = torch.from_numpy(np.array(features[start : start + batch_size])).to(model.device)
        embeds = model.get_image_features(backbone_features=grid)
        bias = probabilities = None
        if imagenet_steering or imagenet_labels:
            pooled = model.get_pooled_features(grid.float())
            probabilities = model.get_imagenet_logits(pooled).softmax(-1)
            if imagenet_steering:
                bias = imagenet_token_bias(model, processor.tokenizer, pooled, imagenet_steering)
        options = (beam_size, length_penalty, no_repeat_ngram_size, bias, probabilities, imagenet_labels)
        captions = captions_from_embeddings(model, processor, embeds, *options)
        texts += [caption.text for caption in captions]
    return caption_metrics([e.captions for e in examples], texts, metrics), texts


def caption_diversity(captions: Sequence[str]) -> dict[str, float]:
    """How loopy and how varied captions are: the share (%) that say some word pair twice ("a white shirt and a
    white shirt"), and how many distinct words they use together (a decoder that says the safe thing uses few)."""
    repeated, words = 0, set()
    for text in captions:
        tokens = text.lower().split()
        bigrams = list(zip(tokens, tokens[1:], strict=False))
        repeated += len(set(bigrams)) < len(bigrams)
        words.update(tokens)
    share = 100.0 * repeated / len(captions) if captions else float("nan")
    return {"repeated_bigram_%": share, "distinct_words": float(len(words))}


@cache
def coco_object_words() -> dict[tuple[str, ...], str]:
    """Stemmed caption words and phrases (`normalize_word`) -> the COCO category they name (man, woman, child...
    -> person), from `resources/coco_object_words.tsv`, as CHAIR's synonym list does."""
    text = resources.files("onenet_hf").joinpath("resources/coco_object_words.tsv").read_text(encoding="utf-8")
    words = {}
    for line in text.splitlines()[1:]:
        category, names = line.split("\t")
        for name in names.split(","):
            words[tuple(normalize_word(word) for word in name.split())] = category
    return words


def caption_objects(caption: str) -> set[str]:
    """The COCO categories a caption names; two-word names are read first, so "hot dog" is a hot dog, not a dog,
    and "teddy bear" no bear."""
    stems = [normalize_word(word) for word in re.findall(r"[a-z]+", caption.lower())]
    names, found, place = coco_object_words(), set(), 0
    while place < len(stems):
        pair = tuple(stems[place : place + 2])
        if len(pair) == 2 and pair in names:
            found.add(names[pair])
            place += 2
            continue
        if (stems[place],) in names:
            found.add(names[(stems[place],)])
        place += 1
    return found


def object_metrics(captions: Sequence[str], objects: Sequence[frozenset[str]]) -> dict[str, float]:
    """Object hallucination (CHAIR, Rohrbach et al., EMNLP 2018) and recall against annotated objects, in %:
    CHAIRi, the share of the object categories captions name that the photo lacks; CHAIRs, the share of captions
    naming at least one such object; object recall, the share of the photos' categories the captions name."""
    if len(captions) != len(objects):
        raise OneNetError(f"got {len(captions)} captions but {len(objects)} object sets")
    named = [caption_objects(caption) for caption in captions]
    mentions = sum(map(len, named))
    invented = [len(said - present) for said, present in zip(named, objects, strict=True)]
    recalled = sum(len(said & present) for said, present in zip(named, objects, strict=True))
    present = sum(map(len, objects))
    return {
        "CHAIRi_%": 100.0 * sum(invented) / mentions if mentions else 0.0,
        "CHAIRs_%": 100.0 * sum(count > 0 for count in invented) / len(captions) if captions else float("nan"),
        "object_recall_%": 100.0 * recalled / present if present else float("nan"),
    }


@dataclass(kw_only=True)
class CaptionEvaluator(SplitEvaluator):
    """Caption metrics of a split (`CAPTION_METRICS`, caption diversity, CHAIR where the COCO split has object
    annotations) and the captions; primary metric CIDEr. Options default to the model's generation config."""

    primary_metric: ClassVar[str] = "CIDEr"
    beam_size: int | None = None
    length_penalty: float | None = None
    no_repeat_ngram_size: int | None = None
    imagenet_steering: float = 0.0
    imagenet_labels: float = LABEL_THRESHOLD

    def __post_init__(self) -> None:
        check_weight("imagenet_steering", self.imagenet_steering)  # before any image is read
        check_label_threshold(self.imagenet_labels)

    def __call__(self, net: OneNet) -> dict:
        data_dir, split, data_format = self.data_dir, self.split, self.data_format
        examples, grids, result = self.inputs(net, "captions")
        generation = caption_options(net.model, self.beam_size, self.length_penalty, self.no_repeat_ngram_size)
        options = {
            "beam_size": generation.num_beams,
            "length_penalty": generation.length_penalty,
            "no_repeat_ngram_size": generation.no_repeat_ngram_size or 0,
            "imagenet_steering": self.imagenet_steering,
            "imagenet_labels": self.imagenet_labels,
        }
        if grids is not None:
            scores, texts = evaluate_on_features(
                net.model, net.processor, grids, examples, metrics=CAPTION_METRICS, **options
            )
        else:
            texts = [c.text for c in net.caption([e.path for e in examples], **options)]
            scores = caption_metrics([e.captions for e in examples], texts)
        backend = "torch" if grids is not None else f"onnx-{net.model.variant}"
        captions = [(e.path.name, text) for e, text in zip(examples, texts, strict=True)]
        metrics = scores | caption_diversity(texts)
        instances = Path(data_dir) / f"instances_{split}.json"
        if data_format == "coco" and instances.is_file():  # objects named that the photo lacks, and recall
            objects = read_coco_objects(instances)
            metrics |= object_metrics(texts, [objects.get(e.path.name, frozenset()) for e in examples])
        return result | {"backend": backend} | options | {"metrics": metrics, "captions": captions}
