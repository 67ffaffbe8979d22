"""onenet_hf.folders.write_json: results and logs are replaced whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onenet_hf.folders import write_json


def test_write_json_makes_the_folder_and_writes_numpy_numbers_as_numbers(tmp_path):
    path = tmp_path / "results" / "run" / "figures.json"
    write_json({"recall": np.float32(0.5), "images": np.int64(3), "rows": [1, 2]}, path)
    assert json.loads(path.read_text()) == {"recall": 0.5, "images": 3, "rows": [1, 2]}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["figures.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "figures.json"
    write_json({"run": 1}, path)
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        write_json({"run": 2, "model": object()}, path)
    assert json.loads(path.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]


def test_a_write_interrupted_before_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "figures.json"
    write_json({"run": 1}, path)

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr("onenet_hf.folders.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json({"run": 2}, path)
    assert json.loads(path.read_text()) == {"run": 1}
