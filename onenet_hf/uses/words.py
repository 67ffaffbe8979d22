"""Uses 3 and 4: similar words and analogies, in the decoder's learned word space or in GloVe."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..word_vectors import UnknownWordError, WordVectors

ANALOGY_METHODS = ("3cosadd", "3cosmul")


@dataclass(frozen=True)
class ScoredWord:
    """A word and its cosine (or 3CosMul) score."""

    word: str
    score: float


def learned_vectors(model, tokenizer) -> WordVectors:
    """The caption decoder's input word embeddings, special tokens left out (ids follow caption frequency)."""
    weights = model.get_input_embeddings().weight.detach().float().cpu().numpy()
    special = set(tokenizer.all_special_ids)
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    rows = [(word, i) for word, i in vocab if i not in special]
    return WordVectors([w for w, _ in rows], weights[[i for _, i in rows]], name="learned caption")


def check_k(k: int) -> None:
    """k of a top-k query must be a positive integer (a k beyond the candidates returns them all)."""
    if not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def similar_words(vectors: WordVectors, text: str, k: int = 10) -> list[ScoredWord]:
    """The k words closest to `text` (one word, or several averaged), the query words left out."""
    check_k(k)
    words = vectors.query_words(text)
    ids = vectors.ids(words)
    top, scores = vectors.nearest(vectors.mean_vector(words), k, exclude=ids)
    return [ScoredWord(vectors.words[i], float(s)) for i, s in zip(top[0], scores[0], strict=True) if np.isfinite(s)]


def _analogy_scores(vectors: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray, method: str) -> np.ndarray:
    """Scores (Q, V) of every word as d in a : b :: c : d, for question rows a, b, c (each (Q,))."""
    if method == "3cosadd":  # cosine with the normalised offset vector, as gensim reports it
        target = vectors[b] - vectors[a] + vectors[c]
        return (target / np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)) @ vectors.T
    if method == "3cosmul":  # Levy & Goldberg (2014): cosines shifted to [0, 1]
        shifted = [(vectors[rows] @ vectors.T + 1.0) / 2.0 for rows in (a, b, c)]
        return shifted[1] * shifted[2] / (shifted[0] + 1e-3)
    raise ValueError(f"unknown analogy method {method!r}; choose one of {ANALOGY_METHODS}")


def solve_analogies(
    vectors: WordVectors,
    questions: np.ndarray,
    k: int = 1,
    method: str = "3cosadd",
    restrict_vocab: int | None = None,
    batch_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Answer many a : b :: c : ? questions (rows (Q, 3) of word ids) at once: top-k ids and scores, (Q, k)."""
    matrix = vectors.vectors[:restrict_vocab]
    k = min(k, len(matrix) - 3)
    answers, answer_scores = [], []
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        scores = _analogy_scores(matrix, batch[:, 0], batch[:, 1], batch[:, 2], method)
        np.put_along_axis(scores, batch, -np.inf, axis=1)  # the query words are never the answer
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
        top = np.take_along_axis(top, order, 1)
        answers.append(top)
        answer_scores.append(np.take_along_axis(scores, top, 1))
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
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
        elif line.strip():
            words = line.lower().split()
            if len(words) != 4 or not sections:
                raise ValueError(f"{path}:{number}: expected ': section' or four words, got {line!r}")
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
    results: dict[str, dict[str, float]] = {}
    totals = {"correct": 0, "questions": 0, "skipped": 0}
    for section, questions in tqdm(read_analogy_questions(path), desc="analogy sections", unit="section"):
        known = [q for q in questions if all(word in allowed for word in q)]
        correct = 0
        if known:
            rows = np.array([[allowed[word] for word in q] for q in known])
            top, _ = solve_analogies(vectors, rows[:, :3], 1, method, restrict_vocab)
            correct = int((top[:, 0] == rows[:, 3]).sum())
        results[section] = _accuracy(correct, len(known), len(questions) - len(known))
        for key, value in (("correct", correct), ("questions", len(known)), ("skipped", len(questions) - len(known))):
            totals[key] += value
    results["total"] = _accuracy(totals["correct"], totals["questions"], totals["skipped"])
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
    "check_k",
    "evaluate_analogies",
    "learned_vectors",
    "read_analogy_questions",
    "similar_words",
    "solve_analogies",
]
