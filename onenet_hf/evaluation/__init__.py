"""Quality measures, one evaluator per task as sentence-transformers' `evaluation` has them: `CaptionEvaluator`
(BLEU, METEOR, ROUGE-L, CIDEr, CHAIR), `TagEvaluator` (precision@5), `RetrievalEvaluator` (recall of each search
method), `AnalogyEvaluator` (the Google analogy set). Each takes its data and keyword options, and returns the
record `onenet evaluate --output` writes when called on a loaded `OneNet`; `evaluate` picks one by task name."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import OneNetError
from ..options import EVALUATION_TASKS
from ..utils.messages import shorten
from .analogies import AnalogyEvaluator, evaluate_analogies, gensim_questions, read_analogy_questions
from .captions import (
    CAPTION_METRICS,
    CaptionEvaluator,
    caption_diversity,
    caption_metrics,
    caption_objects,
    cider_per_image,
    evaluate_on_features,
    object_metrics,
)
from .retrieval import (
    RetrievalEvaluator,
    caption_log_priors,
    caption_queries,
    evaluate_retrieval,
    prior_images,
    rerank_texts,
    reranked_text_scores,
    retrieval_metrics,
    retrieval_ranks,
    retrieval_similarity,
)
from .tags import TagEvaluator, evaluate_tags, image_inputs_from_features, tag_precision

if TYPE_CHECKING:
    from ..onenet import OneNet

# the evaluator of each task of `onenet evaluate --task`, in the order of options.EVALUATION_TASKS (the one list of
# task names, torch-free for the CLI): captions, tags, analogy, retrieval
EVALUATORS = dict(
    zip(EVALUATION_TASKS, (CaptionEvaluator, TagEvaluator, AnalogyEvaluator, RetrievalEvaluator), strict=True)
)


def evaluate(net: OneNet | None, task: str = "captions", **options) -> dict:
    """One evaluation of a loaded `OneNet` (None for GloVe analogies), as `onenet evaluate --output` records it:
    the task's evaluator built with `options` (its keyword arguments: data_dir, split, ...), called on `net`.
    An option the task does not take is an error naming the ones it does."""
    if task not in EVALUATORS:
        raise OneNetError(f"unknown evaluation task {shorten(task)}; choose from {EVALUATION_TASKS}")
    evaluator = EVALUATORS[task]
    accepted = [name for name in inspect.signature(evaluator).parameters]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise OneNetError(f"the {task} task takes no {', '.join(unknown)}; its options: {', '.join(accepted)}")
    return evaluator(**options)(net)


def format_table(results: Mapping[str, float]) -> str:
    """Two aligned columns, metric and value."""
    width = max(len(name) for name in results)
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in results.items())


__all__ = [
    "CAPTION_METRICS",
    "EVALUATION_TASKS",
    "EVALUATORS",
    "AnalogyEvaluator",
    "CaptionEvaluator",
    "RetrievalEvaluator",
    "TagEvaluator",
    "caption_diversity",
    "caption_log_priors",
    "caption_metrics",
    "caption_queries",
    "caption_objects",
    "cider_per_image",
    "evaluate",
    "evaluate_analogies",
    "evaluate_on_features",
    "evaluate_retrieval",
    "evaluate_tags",
    "format_table",
    "gensim_questions",
    "image_inputs_from_features",
    "object_metrics",
    "prior_images",
    "read_analogy_questions",
    "rerank_texts",
    "reranked_text_scores",
    "retrieval_metrics",
    "retrieval_ranks",
    "retrieval_similarity",
    "tag_precision",
]
