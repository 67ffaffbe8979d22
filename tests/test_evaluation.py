"""Caption metrics: per-image CIDEr agrees with the corpus figure `onenet evaluate` reports."""

from __future__ import annotations

import pytest

from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import caption_metrics, cider_per_image

REFERENCES = [
    ["a dog runs on the grass", "a brown dog is running", "the dog plays outside"],
    ["two children play in the water", "kids splash at the beach", "children are swimming"],
    ["a man rides a bike down the road", "a cyclist on a street", "a person riding a bicycle"],
]


def test_per_image_cider_averages_to_the_corpus_figure_and_ranks_the_right_caption_first():
    captions = ["a dog is running on the grass", "a man is standing", "a man rides a bike down the road"]
    scores = cider_per_image(REFERENCES, captions)
    assert scores.shape == (3,)
    assert scores.mean() == pytest.approx(caption_metrics(REFERENCES, captions, ("CIDEr",))["CIDEr"], abs=1e-12)
    assert scores[2] > scores[0] > scores[1]  # a reference word for word, then a near one, then a wrong one


def test_per_image_cider_refuses_unpaired_lists():
    with pytest.raises(OneNetError, match="3 reference sets but 2 hypotheses"):
        cider_per_image(REFERENCES, ["a dog", "a man"])
