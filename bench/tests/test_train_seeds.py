"""bench/training/train_seeds.py: one `train` per seed, a table of the spread, a finished seed never trained again."""

from __future__ import annotations

import json

import pytest

from bench.training import train_seeds
from onenet_hf import evaluation
from tests.conftest import SMALL, write_shapes_dataset


def options(data_dir, output_dir, cache_dir, seeds: str) -> list[str]:
    small = [item for name, value in SMALL.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    paths = ["--data-dir", str(data_dir), "--output-dir", str(output_dir), "--cache-dir", str(cache_dir)]
    return ["--seeds", seeds, "--epochs", "1", "--beam-size", "1", *paths, *small]


@pytest.mark.slow
def test_two_seeds_give_a_table_and_a_finished_seed_is_not_retrained(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        evaluation.captions, "CAPTION_METRICS", ("BLEU-4", "CIDEr")
    )  # METEOR's Java start takes most time
    data = write_shapes_dataset(tmp_path / "shapes", {"train": 1, "dev": 1})
    assert train_seeds.main(options(data, tmp_path / "seeds", tmp_path / "cache", "0,1")) == 0
    result = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert [record["seed"] for record in result["seeds"]] == [0, 1]
    assert (tmp_path / "seeds" / "seed-1" / "model.safetensors").exists()
    for name in ("BLEU-4", "CIDEr"):
        row = result["summary"][name]
        assert row["min"] <= row["mean"] <= row["max"]
    table = (tmp_path / "seeds" / "seeds.md").read_text()
    assert "| **mean** |" in table and "--epochs 1" in table

    def no_training(arguments):
        raise AssertionError(f"seed {arguments.seed} trained again")

    monkeypatch.setattr(train_seeds, "train", no_training)
    assert train_seeds.main(options(data, tmp_path / "seeds", tmp_path / "cache", "0,1")) == 0
    assert json.loads((tmp_path / "seeds" / "seeds.json").read_text()) == result
    assert "done before" in capsys.readouterr().out


def test_seeds_are_capped_and_checked_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_seeds, "train", lambda arguments: pytest.fail("trained"))
    too_many = ",".join(str(seed) for seed in range(train_seeds.MAX_SEEDS + 1))
    for seeds in (too_many, "0,0", "-1", "a,b"):
        assert train_seeds.main(options(tmp_path, tmp_path / "out", tmp_path / "cache", seeds)) == 2
    assert f"at most {train_seeds.MAX_SEEDS}" in capsys.readouterr().err
