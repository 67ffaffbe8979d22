"""Cold start of a built Space as Hugging Face Spaces runs it: fresh venv, `pip install -r requirements.txt`,
`python app.py` in the folder; seconds from the process start to the first caption answered.

Run: onenet build-space --model checkpoints/onenet-flickr8k --out runs/space --gallery ../shared/datasets/coco-mini-dev
     python -m bench.speed.space_cold_start runs/space [--venv runs/space-venv]
The venv and the start are tools/space_runner.py's, which tests/test_space_bundle.py uses too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tools.space_runner import install, start


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
