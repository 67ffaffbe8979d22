"""CIDEr-D on token ids with document frequencies fixed by a corpus: the reward of self-critical training.

The maths is pycocoevalcap's `Cider`, which `onenet evaluate` reports: tf-idf vectors of 1- to 4-grams, the
candidate's weights clipped by the reference's, a Gaussian penalty (sigma 6) on the length difference, the mean
over n-gram orders and references, times 10. Two things differ, as in the CIDEr-D reward of self-critical
training (Rennie et al. 2017): the idf comes from the training references once, not from whatever is scored
together, and each reference's vectors are computed once, so a training step scores hundreds of samples
quickly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

NGram = tuple[int, ...]


class TfIdf:
    """One sentence's tf-idf vector per n-gram order, their norms, and its length as pycocoevalcap counts it."""

    __slots__ = ("length", "norms", "vectors")

    def __init__(self, vectors: list[dict[NGram, float]], norms: list[float], length: int):
        self.vectors, self.norms, self.length = vectors, norms, length


def ngram_counts(token_ids: Sequence[int], n: int = 4) -> Counter[NGram]:
    """How often each 1- to n-gram occurs in a sentence (its token ids, without BOS or EOS)."""
    ids = tuple(token_ids)
    return Counter(ids[i : i + k] for k in range(1, n + 1) for i in range(len(ids) - k + 1))


class CiderD:
    """CIDEr-D of candidate sentences against the references of their images.

    `references[i]` holds the reference sentences (token-id lists) of image i; they fix the document
    frequencies (an n-gram's document is an image) and are the references each candidate is scored against.
    """

    def __init__(self, references: Sequence[Sequence[Sequence[int]]], n: int = 4, sigma: float = 6.0):
        self.n, self.sigma = n, sigma
        counts = [[ngram_counts(sentence, n) for sentence in image] for image in references]
        self.document_frequency: Counter[NGram] = Counter()
        for image in counts:
            self.document_frequency.update({gram for sentence in image for gram in sentence})
        self.log_documents = math.log(float(len(references)))
        self.references = [[self.tf_idf(sentence) for sentence in image] for image in counts]

    def tf_idf(self, counts: Counter[NGram]) -> TfIdf:
        vectors: list[dict[NGram, float]] = [{} for _ in range(self.n)]
        for gram, frequency in counts.items():
            idf = self.log_documents - math.log(max(1.0, self.document_frequency[gram]))
            vectors[len(gram) - 1][gram] = frequency * idf
        norms = [math.sqrt(sum(w * w for w in vector.values())) for vector in vectors]
        length = sum(f for gram, f in counts.items() if len(gram) == 2)  # pycocoevalcap counts bigrams as length
        return TfIdf(vectors, norms, length)

    def similarity(self, candidate: TfIdf, reference: TfIdf) -> float:
        """Mean over n-gram orders of the clipped tf-idf cosine, times the length penalty."""
        penalty = math.exp(-((candidate.length - reference.length) ** 2) / (2 * self.sigma**2))
        total = 0.0
        for order in range(self.n):
            weights = reference.vectors[order]
            value = sum(min(w, weights.get(g, 0.0)) * weights.get(g, 0.0) for g, w in candidate.vectors[order].items())
            norm = candidate.norms[order] * reference.norms[order]
            total += (value / norm if norm else value) * penalty
        return total / self.n

    def scores(self, candidates: Sequence[Sequence[int]], images: Sequence[int]) -> np.ndarray:
        """CIDEr-D of each candidate (token ids without BOS/EOS) against the references of `images[k]`."""
        result = np.empty(len(candidates))
        for k, (candidate, image) in enumerate(zip(candidates, images, strict=True)):
            vector = self.tf_idf(ngram_counts(candidate, self.n))
            references = self.references[image]
            result[k] = 10.0 * sum(self.similarity(vector, r) for r in references) / len(references)
        return result


__all__ = ["CiderD", "ngram_counts"]
