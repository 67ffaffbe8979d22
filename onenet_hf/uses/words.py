"""Uses 3 and 4: similar words and analogies, in the decoder's learned word space or in GloVe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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
    vectors: torch.Tensor, transposed: torch.Tensor, question: torch.Tensor, method: str, out: torch.Tensor
) -> torch.Tensor:
    """Scores (Q, V) of every word as d in a : b :: c : d for question rows (Q, 3), written into `out`."""
    a, b, c = question.unbind(1)
    if method == "3cosadd":  # cosine with the normalised offset vector, as gensim reports it
        target = torch.nn.functional.normalize(vectors[b] - vectors[a] + vectors[c], dim=1)
        return torch.mm(target, transposed, out=out)
    if method == "3cosmul":  # Levy & Goldberg (2014): cosines shifted to [0, 1]
        shifted = [(vectors[rows] @ transposed + 1.0) / 2.0 for rows in (a, b, c)]
        return torch.div(shifted[1] * shifted[2], shifted[0] + 1e-3, out=out)
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
    buffer = torch.empty(min(batch_size, len(rows)), len(matrix))  # reused: no fresh pages per batch
    answers, answer_scores = [], []
    for batch in rows.split(batch_size):
        scores = _analogy_scores(matrix, transposed, batch, method, buffer[: len(batch)])
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


def read_analogy_questions(path: str | Path) -> list[tuple[str, list[tuple[str, str, str, str]]]]:
    """Sections of the Google analogy file (`: section` lines, then `a b c d` lines), lower-cased."""
    sections: list[tuple[str, list[tuple[str, str, str, str]]]] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise OneNetError(f"cannot read the analogy questions {path}: {error}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
        elif line.strip():
            words = line.lower().split()
            if len(words) != 4 or not sections:
                raise OneNetError(f"{path}:{number}: expected ': section' or four words, got {line!r}")
            sections[-1][1].append(tuple(words))
    return sections


def evaluate_analogies(
    vectors: WordVectors, path: str | Path, restrict_vocab: int = 30_000, method: str = "3cosadd"
) -> dict[str, dict[str, float]]:
    """Accuracy per section and in total, as gensim's `evaluate_word_analogies` counts it.

    Only the `restrict_vocab` most frequent words take part; a question with a word outside them is
    skipped (and counted in `skipped`), and the answer is the best word other than the three query words.
    """
    allowed = {word: i for word, i in vectors.index.items() if i < restrict_vocab}
    sections = read_analogy_questions(path)
    known = [[q for q in questions if all(word in allowed for word in q)] for _, questions in sections]
    rows = np.array([[allowed[w] for w in q] for section in known for q in section], dtype=np.int64).reshape(-1, 4)
    top, _ = solve_analogies(vectors, rows[:, :3], 1, method, restrict_vocab)
    hits = top[:, 0] == rows[:, 3] if len(rows) else np.zeros(0, dtype=bool)
    results: dict[str, dict[str, float]] = {}
    start = 0
    for (section, questions), section_known in zip(sections, known, strict=True):
        correct = int(hits[start : start + len(section_known)].sum())
        start += len(section_known)
        results[section] = _accuracy(correct, len(section_known), len(questions) - len(section_known))
    results["total"] = _accuracy(
        int(hits.sum()), len(rows), sum(len(questions) for _, questions in sections) - len(rows)
    )
    return results


def _accuracy(correct: int, questions: int, skipped: int) -> dict[str, float]:
    return {
        "accuracy": correct / questions if questions else float("nan"),
        "correct": correct,
        "questions": questions,
        "skipped": skipped,
    }


__all__ = [
    "ANALOGY_METHODS",
    "ScoredWord",
    "UnknownWordError",
    "analogy",
    "evaluate_analogies",
    "learned_vectors",
    "read_analogy_questions",
    "similar_words",
    "solve_analogies",
]
