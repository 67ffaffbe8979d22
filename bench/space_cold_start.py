"""Cold start of a built Space as Hugging Face Spaces runs it: fresh venv, `pip install -r requirements.txt`,
`python app.py` in the folder; seconds from the process start to the first caption answered.

Run: onenet build-space --model checkpoints/onenet-flickr8k --out runs/space --gallery ../shared/datasets/coco-mini-dev
     python bench/space_cold_start.py runs/space [--venv runs/space-venv]
tests/test_space_bundle.py uses the same functions.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from onenet_hf.data.samples import sample_photos


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
    photo = str(next(p for p in sample_photos() if p.stem == "motorcycle_left"))
    client.predict(handle_file(photo), 3, api_name="/caption")
    return server, client, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("space", type=Path)
    parser.add_argument("--venv", type=Path, help="reuse or create this venv (default: SPACE-venv beside it)")
    args = parser.parse_args()
    space = args.space.resolve()
    venv = (args.venv or space.with_name(space.name + "-venv")).resolve()
    t0 = time.perf_counter()
    python = install(space, venv)
    print(f"install: {time.perf_counter() - t0:.1f} s ({venv})")
    home = venv.with_name(venv.name + "-home")
    home.mkdir(exist_ok=True)
    server, _, seconds = start(space, python, venv.with_name(venv.name + ".log"), home)
    server.terminate()
    server.wait(timeout=30)
    photos = len(list((space / "gallery").iterdir()))
    print(f"cold start (process start to first caption): {seconds:.1f} s; gallery of {photos} photos")


if __name__ == "__main__":
    main()
