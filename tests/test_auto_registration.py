"""`import onenet_hf` imports no torch, yet transformers' Auto classes know OneNet whichever is imported first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "onenet-flickr8k"
LOAD = (
    f"m = AutoModel.from_pretrained({str(CHECKPOINT)!r}); p = AutoProcessor.from_pretrained({str(CHECKPOINT)!r}); "
    "print(type(m).__name__, type(p).__name__)"
)


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_importing_the_package_imports_neither_torch_nor_transformers():
    code = "import sys, onenet_hf; print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    assert run_python(code) == "[]"


@pytest.mark.parametrize(
    "imports",
    [
        "import onenet_hf; from transformers import AutoModel, AutoProcessor",
        "from transformers import AutoModel, AutoProcessor; import onenet_hf",
        "from onenet_hf import OneNet; from transformers import AutoModel, AutoProcessor",
    ],
)
def test_auto_classes_load_a_checkpoint_whatever_the_import_order(imports):
    assert run_python(f"{imports}; {LOAD}") == "OneNetModel OneNetProcessor"
