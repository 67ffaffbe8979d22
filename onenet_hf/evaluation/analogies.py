"""Word analogies: accuracy on the Google analogy set, gensim-style (`evaluate_word_analogies`' sections and
total); `AnalogyEvaluator` runs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..errors import OneNetError
from ..language.word_vectors import WordVectors, glove_vectors
from ..options import ANALOGY_METHODS
from ..uses.words import solve_analogies

if TYPE_CHECKING:
    from ..onenet import OneNet


def gensim_questions() -> str:
    """gensim's copy of the Google analogy questions (questions-words.txt)."""
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise OneNetError("give a questions file (--questions questions-words.txt), or pip install gensim") from None
    return datapath("questions-words.txt")


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


def _accuracy(correct: int, questions: int, skipped: int) -> dict[str, float]:
    return {
        "accuracy": correct / questions if questions else float("nan"),
        "correct": correct,
        "questions": questions,
        "skipped": skipped,
    }


@dataclass(kw_only=True)
class AnalogyEvaluator:
    """Analogy accuracy per section and in total, per method (`methods`), in a word space (`space`: "glove",
    which needs no model, or "learned"); primary metric the total accuracy of the first method."""

    primary_metric: ClassVar[str] = "total"
    space: str = "glove"
    methods: Sequence[str] = ANALOGY_METHODS
    restrict_vocab: int = 30_000
    questions: str | Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.restrict_vocab, int) or self.restrict_vocab < 4:
            raise OneNetError(
                "restrict_vocab must be an integer of at least 4 (three query words and an answer), "
                f"got {self.restrict_vocab}"
            )

    def __call__(self, net: OneNet | None) -> dict:
        vectors = glove_vectors() if self.space == "glove" else net.word_vectors(self.space)
        questions = self.questions or gensim_questions()
        metrics = {m: evaluate_analogies(vectors, questions, self.restrict_vocab, m) for m in self.methods}
        return {"task": "analogy", "space": self.space, "restrict_vocab": self.restrict_vocab, "metrics": metrics}
