"""Latency of describe-to-search per method, one query at a time, on a gallery of the Flickr8k dev images.

The index is built once (or reused, it is persisted) at --index. Run:
python -m bench.speed.describe_speed --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.uses.search import SEARCH_METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--index", default="runs/dev-index")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    examples = read_split(args.data_dir, "dev")
    index = net.build_index([e.path for e in examples], args.index)
    queries = [e.captions[0] for e in examples[: args.queries]]
    net.search(index, queries[0], method="reranked")  # load the sentence encoder before timing
    results = {}
    for method in SEARCH_METHODS:
        seconds = []
        for query in queries:
            start = time.perf_counter()
            net.search(index, query, k=10, method=method)
            seconds.append(time.perf_counter() - start)
        ms = 1000 * np.array(seconds)
        row = {"mean_ms": ms.mean(), "p50_ms": np.percentile(ms, 50), "p95_ms": np.percentile(ms, 95)}
        results[method] = row
        print(f"{method:7s} mean {row['mean_ms']:7.1f} ms  p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms")
    print(f"({len(queries)} dev captions, gallery of {len(index)} images)")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
