"""Uses 3 and 4: similar words and analogies, in the decoder's learned word space or in GloVe."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import OneNetError
from ..language.word_vectors import UnknownWordError, WordVectors
from ..options import ANALOGY_METHODS
from ..utils.messages import shorten
from ..utils.ranking import check_k


@dataclass(frozen=True)
class ScoredWord:
    """A word and its score, higher is better: a cosine (similar words, 3CosAdd analogies), a 3CosMul score, a
    tag's log-probability plus weighted decoder log-chance, an ImageNet label's probability, or the mean rise of
    its log-probability when a neuron is pushed up."""

    word: str
    score: float


def learned_vectors(model, tokenizer) -> WordVectors:
    """The caption decoder's input word embeddings, special tokens left out (ids follow caption frequency)."""
    weights = model.get_input_embeddings().weight.detach().float().cpu().numpy()
    special = set(tokenizer.all_special_ids)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    rows = [(word, i) for word, i in vocab if i not in special]
    return WordVectors([w for w, _ in rows], weights[[i for _, i in rows]], name="learned caption")


def similar_words(vectors: WordVectors, text: str, k: int = 10) -> list[ScoredWord]:
    """The k words closest to `text` (one word, or several averaged), the query words left out."""
    check_k(k)
    words = vectors.query_words(text)
    ids = vectors.ids(words)
    top, scores = vectors.nearest(vectors.mean_vector(words), k, exclude=ids)
    return [ScoredWord(vectors.words[i], float(s)) for i, s in zip(top[0], scores[0], strict=True) if np.isfinite(s)]


def _analogy_scores(
    vectors: torch.Tensor, transposed: torch.Tensor, question: torch.Tensor, method: str, buffers: torch.Tensor
) -> torch.Tensor:
    """Scores (Q, V) of every word as d in a : b :: c : d for question rows (Q, 3), written into `buffers[0]`.

    `buffers` (1 or 3, Q, V) is made once per `solve_analogies` call: fresh 30 MB temporaries per batch grew
    glibc's heap to 3-5 GB over the Google set (its mmap threshold rises to their size once one is freed).
    """
    a, b, c = question.unbind(1)
    if method == "3cosadd":  # cosine with the normalised offset vector, as gensim reports it
        target = torch.nn.functional.normalize(vectors[b] - vectors[a] + vectors[c], dim=1)
        return torch.mm(target, transposed, out=buffers[0])
    if method == "3cosmul":  # Levy & Goldberg (2014): cosines shifted to [0, 1]
        for rows, shifted in zip((b, c, a), buffers, strict=True):
            torch.mm(vectors[rows], transposed, out=shifted).add_(1.0).div_(2.0)
        return buffers[0].mul_(buffers[1]).div_(buffers[2].add_(1e-3))
    raise OneNetError(f"unknown analogy method {shorten(method)}; choose one of {ANALOGY_METHODS}")


@torch.inference_mode()
def solve_analogies(
    vectors: WordVectors,
    questions: np.ndarray,
    k: int = 1,
    method: str = "3cosadd",
    restrict_vocab: int | None = None,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Answer many a : b :: c : ? questions (rows (Q, 3) of word ids) at once: top-k ids and scores, (Q, k).

    Batched matrix products over the whole vocabulary (torch, all cores) instead of one query at a time.
    """
    matrix = torch.from_numpy(vectors.vectors[:restrict_vocab])
    transposed = matrix.T.contiguous()
    rows = torch.from_numpy(np.asarray(questions, dtype=np.int64).reshape(-1, 3))
    k = min(k, len(matrix) - 3)
    buffers = torch.empty(3 if method == "3cosmul" else 1, min(batch_size, len(rows)), len(matrix))
    answers, answer_scores = [], []
    for batch in rows.split(batch_size):
        scores = _analogy_scores(matrix, transposed, batch, method, buffers[:, : len(batch)])
        scores.scatter_(1, batch, -torch.inf)  # the query words are never the answer
        values, indices = scores.max(1, keepdim=True) if k == 1 else scores.topk(k, dim=1)
        answers.append(indices.numpy())
        answer_scores.append(values.numpy())
    if not answers:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(answers), np.concatenate(answer_scores)


def analogy(vectors: WordVectors, a: str, b: str, c: str, k: int = 5, method: str = "3cosadd") -> list[ScoredWord]:
    """a is to b as c is to ?: the k best words, the three query words excluded."""
    check_k(k)
    question = np.array([vectors.ids([w.strip().lower() for w in (a, b, c)])])
    top, scores = solve_analogies(vectors, question, k, method)
    return [ScoredWord(vectors.words[i], float(s)) for i, s in zip(top[0], scores[0], strict=True)]


__all__ = [
    "ANALOGY_METHODS",
    "ScoredWord",
    "UnknownWordError",
    "analogy",
    "learned_vectors",
    "similar_words",
    "solve_analogies",
]
