"""`onenet index` as a user runs it: fresh processes, process start included, on a folder of photos, for each
`--backend` (auto, the default, runs the gallery encoder the checkpoint ships without PyTorch; torch loads the
PyTorch model). Each backend's first run is a warm-up (the OS file cache, onnxruntime's first session) and is
reported apart; the next runs build afresh (--rebuild) and are timed.

    mkdir -p /tmp/index-500 && head -500 ../shared/datasets/flickr8k/Flickr_8k.devImages.txt \\
      | xargs -I{} cp ../shared/datasets/flickr8k/images/{} /tmp/index-500/
    python -m bench.speed.index_speed /tmp/index-500 --output bench/results/index_speed/index_speed_1.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    ROOT,
    cpu_model,
    write_result,
)
from onenet_hf.gallery.build import list_images


def timed_index(images: Path, model: str, out: Path, backend: str, rebuild: bool) -> tuple[float, str]:
    """Seconds of one `onenet index` process, and the line saying which network embedded."""
    command = [sys.executable, "-m", "onenet_hf.cli", "index", str(images), "--model", model, "--out", str(out)]
    command += ["--backend", backend] + (["--rebuild"] if rebuild else [])
    start = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=3600, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"onenet index failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    network = next((line for line in done.stderr.splitlines() if line.startswith("embedding new or changed")), "")
    return seconds, network.removeprefix("embedding new or changed images with ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", type=Path, help="folder of photos (500 for the issue's figure)")
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "onenet-flickr8k"))
    parser.add_argument("--backend", nargs="+", default=["auto", "torch"], choices=["auto", "torch", "onnx"])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per backend, after one warm-up")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    count = len(list_images(args.images))
    results = {"cpu": cpu_model(), "python": sys.version.split()[0], "images": count, "backends": {}}
    for backend in args.backend:
        with tempfile.TemporaryDirectory() as folder:
            warmup, network = timed_index(args.images, args.model, Path(folder) / "index", backend, rebuild=False)
            runs = [
                timed_index(args.images, args.model, Path(folder) / "index", backend, True)[0] for _ in range(args.runs)
            ]
        median = statistics.median(runs)
        results["backends"][backend] = {
            "network": network, "warmup_s": warmup, "seconds": runs, "median_s": median, "images_per_s": count / median,
        }  # fmt: skip
        print(
            f"--backend {backend} ({network}): {count / median:.1f} img/s, process start included "
            f"(median of {', '.join(f'{s:.2f}' for s in runs)} s; warm-up run {warmup:.2f} s)"
        )
    if {"auto", "torch"} <= set(results["backends"]):
        ratio = results["backends"]["torch"]["median_s"] / results["backends"]["auto"]["median_s"]
        results["auto_speedup_over_torch"] = ratio
        print(f"auto is {ratio:.2f} times as fast as torch on {count} photos ({results['cpu']})")
    if args.output:
        write_result(results, args.output)


if __name__ == "__main__":
    main()
