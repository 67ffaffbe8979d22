"""The Space's command line: --help and a model that cannot be had answer before gradio, torch or a model load."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_app(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "ONENET_MODEL"} | {"HF_HUB_OFFLINE": "1"}
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-hub-cache")
    return subprocess.run(
        [sys.executable, str(ROOT / "spaces" / "app.py"), *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_help_imports_neither_gradio_nor_torch(tmp_path):
    code = (
        "import sys; from onenet_hf.space.launch import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted({'gradio', 'torch', 'transformers'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "--gallery" in result.stdout and result.stdout.strip().endswith("[]"), result.stdout + result.stderr


def test_a_model_that_cannot_be_had_is_one_line(tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    result = run_app("--gallery", str(gallery), tmp_path=tmp_path)  # no --model, no $ONENET_MODEL, empty cache
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("OneNet Space: error: onenet-hf/onenet-flickr8k is not in the Hub cache")
    result = run_app("--model", str(tmp_path / "missing"), tmp_path=tmp_path)
    assert result.returncode == 2 and "no such model folder" in result.stderr and "Traceback" not in result.stderr


def test_a_port_outside_1_to_65535_is_refused_before_anything_loads(capsys):
    from onenet_hf.space.launch import build_parser

    assert build_parser().parse_args(["--port", "65535"]).port == 65535
    assert build_parser().parse_args(["--port", "1"]).port == 1
    for port in ("99999", "65536", "0", "-1", "80x", ""):
        with pytest.raises(SystemExit) as error:
            build_parser().parse_args(["--port", port])
        assert error.value.code == 2
        assert f"argument --port: must be a whole number from 1 to 65535, got {port!r}" in capsys.readouterr().err


def test_a_bad_gradio_server_port_is_the_same_one_line(monkeypatch, capsys):
    from onenet_hf.space.launch import build_parser

    monkeypatch.setenv("GRADIO_SERVER_PORT", "99999")
    with pytest.raises(SystemExit) as error:
        build_parser().parse_args([])
    assert error.value.code == 2
    assert "argument --port: must be a whole number from 1 to 65535, got '99999'" in capsys.readouterr().err
    monkeypatch.setenv("GRADIO_SERVER_PORT", "8080")
    assert build_parser().parse_args([]).port == 8080


def test_the_space_caps_malloc_arenas_unless_the_operator_set_them(monkeypatch):
    from onenet_hf.space.launch import limit_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "8")
    assert limit_malloc_arenas() is False  # the operator's own setting rules
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    glibc = platform.libc_ver()[0] == "glibc"
    assert limit_malloc_arenas() is glibc  # mallopt answers 1 on glibc; elsewhere nothing changes
