"""CIDEr-D as the SCST reward: pycocoevalcap's scores when the idf comes from the same references."""

from __future__ import annotations

import random

import numpy as np
import pytest

from onenet_hf.training.cider import CiderD, ngram_counts


def test_ngram_counts_count_every_order_up_to_four():
    counts = ngram_counts([1, 2, 1, 2])
    assert counts[(1, 2)] == 2 and counts[(2, 1)] == 1 and counts[(1,)] == 2 and counts[(1, 2, 1, 2)] == 1
    assert sum(counts.values()) == 4 + 3 + 2 + 1


def test_scores_equal_pycocoevalcap_cider_per_image():
    from pycocoevalcap.cider.cider import Cider

    rng = random.Random(0)
    references = [[[rng.randrange(8) for _ in range(rng.randint(3, 9))] for _ in range(5)] for _ in range(20)]
    candidates = [[rng.randrange(8) for _ in range(rng.randint(1, 10))] for _ in range(20)]
    candidates[3] = list(references[3][0])  # one candidate says a reference word for word
    words = lambda ids: " ".join(map(str, ids))  # noqa: E731
    gts = {i: [words(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [words(c)] for i, c in enumerate(candidates)}
    _, expected = Cider().compute_score(gts, res)
    scores = CiderD(references).scores(candidates, range(20))
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)
    assert scores[3] == scores.max() > 2 * np.median(scores)


def test_idf_stays_that_of_the_corpus_whatever_is_scored_together():
    references = [[[1, 2, 3], [1, 2, 4]], [[5, 6, 7], [5, 6, 1]], [[1, 9, 9], [2, 8, 8]]]
    cider = CiderD(references)
    alone = cider.scores([[1, 2, 3]], [0])
    together = cider.scores([[5, 6, 7], [1, 2, 3], [9, 9]], [1, 0, 2])
    assert together[1] == pytest.approx(alone[0])
    assert cider.scores([[5, 6, 7]], [0])[0] == 0.0  # no shared n-gram with image 0's references
