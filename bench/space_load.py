"""Load test of the Space: N concurrent gradio_client clients, M mixed requests each, against a running app.

Start the Space first (python spaces/app.py), then: python bench/space_load.py --url http://127.0.0.1:7860/
Prints errors and p50/p95 latency per endpoint, all from this one run.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file

from onenet_hf.samples import sample_photos


def requests(photos: list[str]) -> list[tuple[str, tuple]]:
    """One of each request kind; clients draw from these."""
    return [
        ("/caption", (handle_file(photos[0]), 3)),
        ("/tag", (handle_file(photos[1]), 5)),
        ("/similar_words", ("beach", "glove", 10)),
        ("/analogy", ("man", "king", "woman", "3cosadd", "glove", 5)),
        ("/similar_images", (None, 0, 6, "")),
        ("/search", ("a dog running on the grass", "reranked", 6)),
    ]


def run_client(url: str, count: int, seed: int, photos: list[str]) -> list[tuple[str, float, str | None]]:
    client, rng, results = Client(url, verbose=False), random.Random(seed), []
    kinds = requests(photos)
    for _ in range(count):
        endpoint, args = rng.choice(kinds)
        start = time.perf_counter()
        try:
            client.predict(*args, api_name=endpoint)
            error = None
        except Exception as exc:  # a load test counts every failure, whatever it is
            error = f"{type(exc).__name__}: {exc}"
        results.append((endpoint, time.perf_counter() - start, error))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:7860/")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    photos = [str(p) for p in sample_photos()]
    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        runs = pool.map(lambda seed: run_client(args.url, args.requests, seed, photos), range(args.clients))
        rows = [row for run in runs for row in run]
    wall = time.perf_counter() - start
    latencies, errors = defaultdict(list), [row for row in rows if row[2]]
    for endpoint, seconds, error in rows:
        if not error:
            latencies[endpoint].append(1000 * seconds)
    print(f"{args.clients} clients x {args.requests} requests = {len(rows)} in {wall:.1f} s, errors: {len(errors)}")
    for message in sorted({e for _, _, e in errors})[:5]:
        print(f"  error: {message[:200]}")
    summary = {}
    for endpoint, values in sorted(latencies.items()):
        p50, p95 = np.percentile(values, 50), np.percentile(values, 95)
        summary[endpoint] = {"requests": len(values), "p50_ms": p50, "p95_ms": p95}
        print(f"{endpoint:22s} n={len(values):3d}  p50 {p50:8.0f} ms  p95 {p95:8.0f} ms")
    if args.output:
        result = {"clients": args.clients, "errors": len(errors), "wall_s": wall, "endpoints": summary}
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
