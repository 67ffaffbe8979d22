"""bench/common.py: every result file says which commit, CPU and versions made it."""

from __future__ import annotations

import json
import subprocess

from bench.common import ROOT, write_result


def test_a_result_carries_its_run_and_a_list_result_its_rows(tmp_path):
    write_result({"recall@10": 0.95}, tmp_path / "dict.json")
    write_result([{"k": 1}], tmp_path / "list.json")
    as_dict, as_list = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("dict", "list"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    run = as_dict["run"]
    assert run["commit"].split("+")[0] == head and run["cores"] >= 1 and run["cpu"]
    assert {"onenet_hf", "torch", "numpy"} <= run["versions"].keys()
    assert as_dict["recall@10"] == 0.95 and as_list["rows"] == [{"k": 1}] and as_list["run"]["commit"] == run["commit"]
