"""bench/quality/activation_percentile.py: it refuses, before loading a model, settings it cannot measure honestly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PIL import Image

import bench.quality.activation_percentile as bench


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    """A Flickr8k-like train list of 2,100 photos, the first two of them in a calibration folder."""
    names = [f"{i}.jpg" for i in range(2_100)]
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("\n".join(names) + "\n")
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for name in names[:2]:
        Image.new("RGB", (8, 8)).save(calibration / name)
    return tmp_path, calibration


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--held-out", "1", "4"], "1 held-out photos are calibration photos too"),
        (["--held-out", "3", "3"], "--held-out needs 0 <= START < STOP <= 2,100"),
        (["--held-out", "2", "2101"], "--held-out needs 0 <= START < STOP <= 2,100"),
        (["--held-out", "2", "2003"], "at most 2,000 photos"),
        (["--held-out", "2", "4", "--calibration-count", "0"], "--calibration-count must be 1 to"),
        (["--held-out", "2", "4", "--percentiles", "99.9", "99.9"], "each setting once"),
        (["--held-out", "2", "4", "--percentiles", "99.9", "100"], "between 50 and 100"),
        (["--held-out", "2", "4", "--percentiles", "high"], "min/max or numbers"),
        (["--held-out", "2", "4", "--percentiles", *["99.9"] * 7], "at most 6 --percentiles"),
    ],
)
def test_the_bench_refuses_what_it_cannot_measure(data, extra, message, monkeypatch, capsys):
    data_dir, calibration = data
    argv = ["activation_percentile.py", "--data-dir", str(data_dir), "--calibration-images", str(calibration), *extra]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setattr(bench.OneNet, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit):
        bench.main()
    assert message in capsys.readouterr().err
