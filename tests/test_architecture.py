"""The package's layers and loops are a contract (`[tool.importlinter]` in pyproject.toml), checked here so CI
fails on an import up a layer or round a loop, lazy imports included."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter on the package under `root`, as `lint-imports` runs it there."""
    command = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports; raise SystemExit(lint_imports(no_cache=True))",
    ]
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_no_import_runs_up_a_layer_or_round_a_loop():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_the_contract_fails_on_an_import_up_a_layer(tmp_path):
    """The contract has teeth: a helper at the bottom that reaches for the `OneNet` API breaks it."""
    shutil.copytree(ROOT / "onenet_hf", tmp_path / "onenet_hf", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    helper = tmp_path / "onenet_hf" / "utils" / "ranking.py"
    helper.write_text(helper.read_text() + "\n\ndef _api():\n    from ..onenet import OneNet\n\n    return OneNet\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "onenet_hf.utils is not allowed to import onenet_hf.onenet" in " ".join(result.stdout.split())
