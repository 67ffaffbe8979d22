"""bench/quality/static_int8_choices.py: per-photo values average to the corpus figures the bench reports, so
their paired bootstrap and the across-draws summary describe the same gaps the README's tables give."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.quality.static_int8_choices as choices
from onenet_hf.data.datasets import CaptionedImage
from onenet_hf.evaluation import caption_metrics, retrieval_metrics

REFERENCES = [
    ["a dog runs on the grass", "a brown dog is running"],
    ["two children play in the water", "kids splash at the beach"],
    ["a man rides a bike down the road", "a cyclist on a street"],
]
EXAMPLES = [CaptionedImage(path=Path(f"{i}.jpg"), captions=c) for i, c in enumerate(REFERENCES)]
OWNERS = torch.tensor([0, 0, 1, 1, 2, 2])
SIMILARITY = torch.tensor(
    [[0.9, 0.1, 0.0], [0.2, 0.8, 0.5], [0.1, 0.7, 0.3], [0.6, 0.5, 0.4], [0.1, 0.2, 0.3], [0.5, 0.2, 0.1]]
)


def test_per_photo_values_average_to_the_corpus_figures():
    captions = ["a dog is running on the grass", "a man is standing", "a man rides a bike down the road"]
    outcomes = choices.per_photo(EXAMPLES, captions, (SIMILARITY, OWNERS))
    corpus = retrieval_metrics(SIMILARITY, OWNERS) | caption_metrics(REFERENCES, captions, ("CIDEr",))
    recalls = {f"{side}_R@{k}" for side in ("text_to_image", "image_to_text") for k in (1, 5, 10)}
    assert set(outcomes) == {"CIDEr", *recalls}
    assert outcomes["CIDEr"].mean() == pytest.approx(corpus["CIDEr"], abs=1e-12)
    for figure in recalls:
        assert 100 * outcomes[figure].mean() == pytest.approx(corpus[figure], abs=1e-4), figure
    assert outcomes["text_to_image_R@1"].tolist() == [0.5, 0.5, 0.5]  # texts 1, 3 and 5 rank another photo first


def test_per_photo_refuses_photos_with_unequal_caption_counts():
    with pytest.raises(ValueError, match="as many captions for every photo"):
        choices.per_photo(EXAMPLES, ["a", "b", "c"], (SIMILARITY[:5], OWNERS[:5]))


def test_paired_gap_is_the_mean_difference_in_points_with_no_spread_for_a_constant_shift():
    reference = np.array([0.2, 0.4, 0.6, 0.8])
    same = choices.paired_gap(reference, reference + 0.01)
    assert same["points"] == pytest.approx(1.0) and same["bootstrap_se"] == pytest.approx(0.0, abs=1e-12)
    varied = choices.paired_gap(reference, reference + np.array([0.0, 0.0, 0.0, 0.04]))
    assert varied["points"] == pytest.approx(1.0) and varied["bootstrap_se"] > 0
    assert varied["bootstrap_95"][0] <= 1.0 <= varied["bootstrap_95"][1]


def test_across_draws_summarises_each_gap_and_bleu_from_the_corpus_figures():
    rows = {
        name: {"gaps": {"CIDEr": {"points": cider}}, "BLEU-4": bleu}
        for name, cider, bleu in (("first", -0.07, 0.2132), ("second", -1.21, 0.2133))
    }
    summary = choices.across_draws(rows, {"BLEU-4": 0.2161})
    assert summary["draws"] == ["first", "second"]
    assert summary["CIDEr"] == pytest.approx(
        {"mean": -0.64, "sd": np.std([-0.07, -1.21], ddof=1), "min": -1.21, "max": -0.07}
    )
    assert summary["BLEU-4"]["mean"] == pytest.approx(-0.285)


@pytest.mark.parametrize("count", ["0", "100000"])
def test_the_calibration_count_is_capped_before_a_model_loads(count, tmp_path, monkeypatch, capsys):
    argv = ["static_int8_choices.py", "--calibration-images", str(tmp_path), "--calibration-count", count]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(choices.OneNet, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit):
        choices.main()
    assert f"--calibration-count must be 1 to 5,000, got {count}" in capsys.readouterr().err
