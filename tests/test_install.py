"""A wheel (`pip install .`, no extras) in a fresh venv, run from another folder, offline against a Hub cache.

Slow (it installs torch and friends into a venv from the package index or pip's cache; --no-compile, as
Python compiles only what it imports, halves that: 40 s against 98 s on a 2-core AMD EPYC).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from onenet_hf import OneNet
from onenet_hf.data.example_photos import example_photos

from .hub_cache import add_snapshot

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "onenet-flickr8k"
REPO_ID = "onenet-hf/onenet-flickr8k"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding only the onenet_hf wheel and its requirements (no extras)."""
    work = tmp_path_factory.mktemp("install")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(work), str(ROOT)]
    subprocess.run(pip, check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    wheel = next(work.glob("onenet_hf-*.whl"))
    install = [str(work / "venv" / "bin" / "pip"), "install", "-q", "--no-compile", str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    return work / "venv"


@pytest.fixture(scope="module")
def hub_home(tmp_path_factory) -> Path:
    """HF_HOME whose Hub cache holds the shipped release, its ONNX graphs included (exported here)."""
    from onenet_hf.onnx.export import export_onnx

    home = tmp_path_factory.mktemp("hf-home")
    release = home.parent / f"{home.name}-release"
    shutil.copytree(CHECKPOINT, release, ignore=shutil.ignore_patterns("onnx"))
    export_onnx(release, release / "onnx", int8_dynamic=False)
    add_snapshot(home / "hub", REPO_ID, release)
    return home


def run(venv: Path, args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_HUB_CACHE", "ONENET_MODEL")}
    env |= {"HF_HOME": str(home), "HF_HUB_OFFLINE": "1", "PATH": f"{venv / 'bin'}:{env['PATH']}"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_wheel_works_from_another_folder_by_hub_id_and_says_which_extra_is_missing(venv, hub_home, tmp_path):
    photo = str(next(p for p in example_photos() if p.stem == "motorcycle_left"))
    expected = OneNet.from_pretrained(CHECKPOINT).caption(photo)[0].text
    result = run(venv, ["onenet", "caption", "--model", REPO_ID, photo], tmp_path, hub_home)
    assert result.returncode == 0 and result.stdout == f"{photo}\t{expected}\n", result.stderr
    # transformers' own calls by Hub id as users of remote-code models write them (no onenet_hf import), then
    # transformers' own image-text-to-text pipeline once onenet_hf is imported (no trust_remote_code)
    script = (
        "import sys; from transformers import AutoModel, pipeline; "
        f"model = AutoModel.from_pretrained('{REPO_ID}', trust_remote_code=True); print(type(model).__name__); "
        f"print(pipeline(model='{REPO_ID}', trust_remote_code=True)(sys.argv[1])[0]['generated_text']); "
        f"import onenet_hf; p = pipeline('image-text-to-text', model='{REPO_ID}'); "
        "print(p(images=sys.argv[1], text='')[0]['generated_text']); print(onenet_hf.__file__)"
    )
    result = run(venv, ["python", "-c", script, photo], tmp_path, hub_home)
    model_class, remote, prompted, where = result.stdout.splitlines()
    assert (model_class, remote, prompted) == ("OneNetModel", expected, expected), result.stderr
    assert str(venv) in where and str(ROOT) not in where  # the installed copy, not the checkout
    for args in (["onenet", "export", str(CHECKPOINT)], ["onenet", "caption", "--backend", "onnx", photo]):
        result = run(venv, args, tmp_path, hub_home)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "pip install 'onenet_hf[onnx]'" in result.stderr
    run(venv, ["pip", "install", "-q", "onnxruntime"], tmp_path, hub_home).check_returncode()
    result = run(venv, ["onenet", "caption", "--backend", "onnx", "--model", REPO_ID, photo], tmp_path, hub_home)
    assert result.returncode == 0 and result.stdout == f"{photo}\t{expected}\n", result.stderr


def test_the_constraints_file_pins_every_requirement_within_the_bounds():
    import tomllib
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    for requirement in map(Requirement, wanted):
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"constraints.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])
