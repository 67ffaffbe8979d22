"""Load test of the Space: a visitor alone, then N concurrent gradio_client clients x M requests of a fixed mix.

    python -m bench.speed.space_load --serve --output bench/results/space_load/after.json
    python -m bench.speed.space_load --serve --app-root /tmp/before     # the same mix against another checkout
    python -m bench.speed.space_load --url http://127.0.0.1:7860/       # a Space already running (no memory figure)

`--serve` starts `APP_ROOT/spaces/app.py` itself (its `onenet_hf` first on the path), waits for it, and reads the
server process's peak resident memory (VmHWM) at the end. The mix is drawn from `--seed` alone: two runs with the
same seed send the same requests in the same order per client. Every image request sends a photo no other request
sends (Flickr8k dev photos) and every description is new (up to 64), so none is answered from a cache of an
earlier one; gallery clicks (ten photos) and words do repeat. The clients run on this machine too, so their CPU
time is reported beside the server's. Prints throughput, errors and p50/p95 per endpoint, all from this one run.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from bench.common import (
    ROOT,
    write_result,
)
from onenet_hf import read_split

ENDPOINTS = ("/caption", "/tag", "/similar_words", "/analogy", "/similar_images", "/search")
WORDS = ("beach", "dog", "snow", "bike", "water", "grass", "girl", "ball", "street", "mountain")
ANALOGIES = (("man", "king", "woman"), ("paris", "france", "rome"), ("big", "bigger", "small"))
SUBJECTS = ("a dog", "a child", "a man", "two girls", "a woman", "a boy", "people", "a black dog")
PLACES = ("on the grass", "in the water", "on a bike", "in the snow", "on the beach", "in a street", "at a park",
          "on a rock")  # fmt: skip
DESCRIPTIONS = tuple(f"{subject} {place}" for place in PLACES for subject in SUBJECTS)  # 64, each asked once
Request = tuple[str, tuple]


def dev_photos(data_dir: Path, count: int) -> list[str]:
    """`count` Flickr8k dev photos in the split's order: distinct uploads for the image requests."""
    paths = [str(example.path) for example in read_split(data_dir, "dev")]
    if len(paths) < count:
        raise SystemExit(f"{count} image requests need {count} dev photos; {data_dir} has {len(paths)}")
    return paths[:count]


def request_for(endpoint: str, number: int, photo: str | None, alone: bool = False) -> Request:
    """The `number`-th request of one kind: its arguments vary with `number`, images are the given photo. The
    alone phase takes descriptions from the other end of the list and gallery rows 10-17, so the load's
    requests are not answered from what it left in the Space's cache."""
    if endpoint == "/caption":
        return endpoint, (handle_file(photo), 3)
    if endpoint == "/tag":
        return endpoint, (handle_file(photo), 5)
    if endpoint == "/similar_words":
        return endpoint, (WORDS[number % len(WORDS)], "glove", 10)
    if endpoint == "/analogy":
        return endpoint, (*ANALOGIES[number % len(ANALOGIES)], "3cosadd", "glove", 5)
    if endpoint == "/similar_images":
        return endpoint, (None, 10 + number % 8 if alone else number % 10, 6, "")  # a click on a gallery photo
    return endpoint, (DESCRIPTIONS[-1 - number if alone else number % len(DESCRIPTIONS)], "reranked", 6)


def fixed_mix(clients: int, per_client: int, seed: int, data_dir: Path) -> list[list[Request]]:
    """Each client's requests, drawn from `seed` only; each image request gets its own photo."""
    rng = random.Random(seed)
    kinds = [[rng.choice(ENDPOINTS) for _ in range(per_client)] for _ in range(clients)]
    image_requests = sum(kind in ("/caption", "/tag") for row in kinds for kind in row)
    photos, counts = iter(dev_photos(data_dir, image_requests)), defaultdict(int)
    mix = []
    for row in kinds:
        mix.append([])
        for endpoint in row:
            photo = next(photos) if endpoint in ("/caption", "/tag") else None
            mix[-1].append(request_for(endpoint, counts[endpoint], photo))
            counts[endpoint] += 1
    return mix


def timed(client: Client, request: Request) -> tuple[str, float, str | None]:
    endpoint, args = request
    start = time.perf_counter()
    try:
        client.predict(*args, api_name=endpoint)
        error = None
    except Exception as exc:  # a load test counts every failure, whatever it is
        error = f"{type(exc).__name__}: {exc}"
    return endpoint, time.perf_counter() - start, error


def percentiles(rows: list[tuple[str, float, str | None]]) -> dict[str, dict]:
    latencies = defaultdict(list)
    for endpoint, seconds, error in rows:
        if not error:
            latencies[endpoint].append(1000 * seconds)
    return {
        endpoint: {"requests": len(v), "p50_ms": float(np.percentile(v, 50)), "p95_ms": float(np.percentile(v, 95))}
        for endpoint, v in sorted(latencies.items())
    }


def alone(url: str, count: int, data_dir: Path) -> dict[str, dict]:
    """One visitor, one request at a time: `count` of each kind (after one unmeasured warm-up each)."""
    client, rows = Client(url, verbose=False, ssl_verify=False), []
    photos = iter(dev_photos(data_dir, 1000)[-2 * (count + 1) :])  # the dev list's end: never in the load mix
    for endpoint in ENDPOINTS:
        for number in range(count + 1):
            photo = next(photos) if endpoint in ("/caption", "/tag") else None
            row = timed(client, request_for(endpoint, number, photo, alone=True))
            if number:
                rows.append(row)
    return percentiles(rows)


def under_load(url: str, mix: list[list[Request]]) -> tuple[float, list]:
    def run_client(requests: list[Request]) -> list:
        client = Client(url, verbose=False, ssl_verify=False)
        return [timed(client, request) for request in requests]

    start = time.perf_counter()
    with ThreadPoolExecutor(len(mix)) as pool:
        rows = [row for run in pool.map(run_client, mix) for row in run]
    return time.perf_counter() - start, rows


def serve(app_root: Path, model: str, port: int, options: list[str]) -> subprocess.Popen:
    """`APP_ROOT/spaces/app.py` on 127.0.0.1:`port`, its own `onenet_hf` first on the path, the gallery index in
    a fresh folder; returns once it answers."""
    env = dict(os.environ, PYTHONPATH=str(app_root), GRADIO_ANALYTICS_ENABLED="False")
    command = [sys.executable, str(app_root / "spaces" / "app.py"), "--model", model, "--port", str(port)]
    command += ["--index-dir", tempfile.mkdtemp(prefix="space-load-"), *options]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            Client(f"http://127.0.0.1:{port}/", verbose=False)
            return process
        except Exception:  # not up yet
            if process.poll() is not None:
                raise SystemExit(f"the Space exited with code {process.returncode}") from None
            time.sleep(1)
    process.kill()
    raise SystemExit("the Space did not answer within 10 minutes")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc: memory is measured on Linux only")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--serve", action="store_true", help="start the Space here and measure its memory")
    parser.add_argument("--app-root", type=Path, default=ROOT, help="the checkout whose Space --serve starts")
    parser.add_argument("--model", default=str(ROOT / "checkpoints" / "onenet-flickr8k"))
    help_text = "an option for the served app, e.g. --app-option=--max-batch-size=1 (repeatable)"
    parser.add_argument("--app-option", action="append", default=[], help=help_text)
    parser.add_argument("--port", type=int, default=7871)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets" / "flickr8k")
    parser.add_argument("--clients", type=int, default=20, choices=range(1, 101), metavar="1..100")
    parser.add_argument("--requests", type=int, default=10, choices=range(1, 101), metavar="1..100")
    parser.add_argument("--alone", type=int, default=20, choices=range(0, 21), metavar="0..20",
                        help="requests per endpoint from a visitor alone (0: skip)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="draws the mix")
    parser.add_argument("--output", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    if args.serve and not (Path(args.model) / "onnx" / "manifest.json").is_file():
        print(f"note: {args.model} has no ONNX export, so the Space runs on PyTorch alone (onenet export MODEL)")
    mix = fixed_mix(args.clients, args.requests, args.seed, args.data_dir)
    process = serve(args.app_root, args.model, args.port, args.app_option) if args.serve else None
    url = f"http://127.0.0.1:{args.port}/" if process else args.url
    try:
        alone_figures = alone(url, args.alone, args.data_dir) if args.alone else {}
        server_cpu, client_cpu = cpu_seconds(process.pid) if process else 0.0, sum(os.times()[:2])
        wall, rows = under_load(url, mix)
        server_cpu = cpu_seconds(process.pid) - server_cpu if process else None
        client_cpu = sum(os.times()[:2]) - client_cpu
        memory = peak_memory_mb(process.pid) if process else None
    finally:
        if process:
            process.kill()
    errors = [row for row in rows if row[2]]
    load = percentiles(rows)
    print(f"app: {args.app_root}  model: {args.model}")
    for endpoint, figures in alone_figures.items():
        print(f"alone {endpoint:18s} n={figures['requests']:3d}  p50 {figures['p50_ms']:8.1f} ms")
    throughput = len(rows) / wall
    print(f"{args.clients} clients x {args.requests} requests = {len(rows)} in {wall:.1f} s ({throughput:.2f}/s), "
          f"errors: {len(errors)}" + (f", server peak memory {memory:.0f} MB" if memory else ""))  # fmt: skip
    cpu = f"server {server_cpu:.1f} s, " if process else ""
    print(f"CPU time during the load: {cpu}clients (this process) {client_cpu:.1f} s")
    for message in sorted({e for _, _, e in errors})[:5]:
        print(f"  error: {message[:200]}")
    for endpoint, figures in load.items():
        print(
            f"{endpoint:22s} n={figures['requests']:3d}  p50 {figures['p50_ms']:8.0f} ms  "
            f"p95 {figures['p95_ms']:8.0f} ms"
        )
    if args.output:
        result = {
            "app_root": str(args.app_root), "app_options": args.app_option, "model": args.model,
            "clients": args.clients,
            "requests_per_client": args.requests, "seed": args.seed, "errors": len(errors), "wall_s": wall,
            "requests_per_s": throughput, "server_peak_memory_mb": memory,
            "server_cpu_s": server_cpu, "client_cpu_s": client_cpu, "alone": alone_figures, "endpoints": load,
        }  # fmt: skip
        write_result(result, args.output)


if __name__ == "__main__":
    main()
