"""What every benchmark shares: the machine a figure comes from, and result files that say which commit, CPU
and versions made them (written whole, as `onenet_hf.utils.atomic_files.write_json` writes)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from onenet_hf.utils.atomic_files import write_json

ROOT = Path(__file__).resolve().parents[1]
VERSIONED = ("onenet_hf", "torch", "transformers", "numpy", "onnxruntime", "faiss-cpu", "gradio")


def cpu_model() -> str:
    """The CPU's model name (Linux), since timings differ by machine."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")


def run_record() -> dict:
    """Which code and machine a result comes from: the checkout's commit (with "+changes" when the tree differs
    from it), the CPU, its core count, Python and the versions of the packages a figure depends on."""

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no"):
        commit += "+changes"
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "commit": commit,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "versions": versions,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def write_result(result: dict | list, path: str | Path) -> None:
    """A benchmark's result file, with the run it comes from under "run" (a list result goes under "rows")."""
    body = result if isinstance(result, dict) else {"rows": result}
    write_json({"run": run_record(), **body}, Path(path))


__all__ = ["cpu_model", "run_record", "write_result"]
