"""Caption quality with the COCO caption toolkit (pycocoevalcap): BLEU-1..4, METEOR, ROUGE-L, CIDEr."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .data import CaptionedImage
from .modeling_onenet import OneNetModel
from .processing_onenet import OneNetProcessor
from .uses.caption import captions_from_embeddings

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
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} reference sets but {len(hypotheses)} hypotheses")
    unknown = set(metrics) - set(CAPTION_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {CAPTION_METRICS}")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})
    scores: dict[str, float] = {}
    if any(m.startswith("BLEU") for m in metrics):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n}": float(b) for n, b in enumerate(bleu, 1)})
    scorers: Mapping[str, type] = {"METEOR": Meteor, "ROUGE-L": Rouge, "CIDEr": Cider}
    for name, scorer in scorers.items():
        if name in metrics:
            scores[name] = float(scorer().compute_score(gts, res)[0])
    return {name: scores[name] for name in metrics}


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
) -> tuple[dict[str, float], list[str]]:
    """Caption metrics of the model on cached backbone features of `examples`, and the captions."""
    model.eval()
    texts: list[str] = []
    for start in range(0, len(examples), batch_size):
        grid = torch.from_numpy(np.array(features[start : start + batch_size])).to(model.device)
        embeds = model.get_image_features(backbone_features=grid)
        captions = captions_from_embeddings(model, processor, embeds, beam_size, length_penalty)
        texts += [caption.text for caption in captions]
    return caption_metrics([e.captions for e in examples], texts, metrics), texts


def format_table(results: Mapping[str, float]) -> str:
    """Two aligned columns, metric and value."""
    width = max(len(name) for name in results)
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in results.items())


__all__ = ["CAPTION_METRICS", "caption_metrics", "evaluate_on_features", "format_table"]
