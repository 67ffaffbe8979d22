"""A built Space run as Hugging Face Spaces runs it: a fresh venv with its requirements.txt, then `python app.py`
in its folder. Shared by tests/test_space_bundle.py and bench/speed/space_cold_start.py (run from the checkout's
root), so neither imports the other."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from onenet_hf.data.example_photos import example_photos


def install(space: Path, venv: Path, compile_bytecode: bool = True) -> Path:
    """A fresh venv with the Space's requirements.txt installed from inside its folder; its python. Tests skip
    compiling .pyc files (faster); the bench keeps pip's default, as Spaces install."""
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "-r", "requirements.txt"]
    if not compile_bytecode:
        pip.insert(3, "--no-compile")
    subprocess.run(pip, cwd=space, check=True, capture_output=True, timeout=1200)
    return venv / "bin" / "python"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(space: Path, python: Path, log: Path, home: Path, limit_s: float = 300.0):
    """Start `python app.py` in the folder (no checkout on sys.path, offline, a fresh HOME); wait for its first
    caption. Returns the process, a connected gradio_client and the seconds from start to that caption."""
    from gradio_client import Client, handle_file

    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ONENET_MODEL")}
    env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1"}
    env["HOME"] = str(home)
    started = time.perf_counter()
    server = subprocess.Popen(
        [str(python), "app.py"], cwd=space, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    client = None
    while client is None:
        if server.poll() is not None or time.perf_counter() - started > limit_s:
            server.kill()
            raise RuntimeError(f"the Space did not answer within {limit_s:.0f} s:\n{log.read_text()[-3000:]}")
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        except Exception:
            time.sleep(0.5)
    photo = str(next(p for p in example_photos() if p.stem == "motorcycle_left"))
    client.predict(handle_file(photo), 3, api_name="/caption")
    return server, client, time.perf_counter() - started


__all__ = ["free_port", "install", "start"]
