"""Top-k of score arrays (similar words, gallery search) and the cap on k that every top-k query shares."""

from __future__ import annotations

import numpy as np

from .checks import check_integer

MAX_K = 1000  # results of one top-k query (words, tags, gallery images)


def check_k(k: int, maximum: int = MAX_K) -> None:
    """k of a top-k query must be a positive integer up to `maximum` (a k beyond the candidates returns them
    all); the cap bounds the work a query asks for, e.g. the decoder re-ranking `k` gallery images."""
    check_integer("k", k, 1, maximum)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns and values of the k highest scores of each row of `scores` (Q, N) -> (Q, k) each, best first.

    Ties keep column order. Excluded entries are -inf in `scores`; they come last, so callers drop them.
    """
    scores = np.atleast_2d(scores)
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((len(scores), 0), dtype=np.int64), np.zeros((len(scores), 0), dtype=scores.dtype)
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
    return top, np.take_along_axis(scores, top, 1)


def top_k_pairs(scores: np.ndarray, k: int, skip: int | None = None) -> list[tuple[int, float]]:
    """(column, score) of the k best finite scores of one row (N,), best first, leaving out column `skip`."""
    if skip is not None:
        scores = scores.copy()
        scores[skip] = -np.inf
    columns, values = top_k(scores, k)
    return [(int(i), float(s)) for i, s in zip(columns[0], values[0], strict=True) if np.isfinite(s)]


__all__ = ["MAX_K", "check_k", "top_k", "top_k_pairs"]
