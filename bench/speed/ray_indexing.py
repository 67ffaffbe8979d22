"""Indexing throughput with Ray Data (`onenet index --engine ray`) against this process alone, in one run.

Each build embeds the same dev photos into a fresh index with `build_index` (listing, hashing, decoding, the
network, shards and SQLite), as `onenet index` runs it: `--engine local`, then Ray Data with 1 and with 2 actors
(`--workers`). Ray starts once before the timed builds (on this machine, or joins `--address`); each Ray build's
time includes starting its actors and loading the model in each, as a real build's does.
Run: python -m bench.speed.ray_indexing --output bench/results/ray_indexing/ray_indexing.json
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import ray

from bench.common import write_result
from bench.speed.embed_speed import build_rate
from onenet_hf import OneNet, read_split
from onenet_hf.ray_indexing import RayEmbedder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--images", type=int, default=400, help="dev photos indexed (the first N)")
    parser.add_argument("--workers", default="1,2", help="actor counts to time, comma-separated")
    parser.add_argument("--address", help="a Ray cluster to run on (default: a local Ray on this machine's cores)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model, backend="auto", onnx_variant="fastest")  # as onenet index loads it
    paths = [example.path for example in read_split(args.data_dir, "dev")[: args.images]]
    ray.init(address=args.address, logging_level=logging.WARNING)
    results = {"images": len(paths), "cluster_cpus": ray.cluster_resources().get("CPU"), "images_per_s": {}}
    results["images_per_s"]["local"] = build_rate(lambda folder: net.build_index(paths, folder))
    print(f"local: {results['images_per_s']['local']:.1f} img/s")
    for workers in (int(w) for w in args.workers.split(",")):
        embedder = RayEmbedder(args.model, workers, args.address, backend="auto", onnx_variant="fastest")
        rate = build_rate(lambda folder, e=embedder: net.build_index(paths, folder, embedder=e))
        results["images_per_s"][f"ray, {workers} workers"] = rate
        print(f"ray, {workers} workers: {rate:.1f} img/s")
    ray.shutdown()
    rates = results["images_per_s"]
    if "ray, 1 workers" in rates and "ray, 2 workers" in rates:
        results["ratio_2_to_1_workers"] = rates["ray, 2 workers"] / rates["ray, 1 workers"]
        print(f"2 workers / 1 worker: {results['ratio_2_to_1_workers']:.2f}x")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
