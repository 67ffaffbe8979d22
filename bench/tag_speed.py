"""Latency of tagging one image (decode, backbone, tag head, sampled captions) per number of sampled captions.

Settings are interleaved image by image, so a noisy machine slows them alike; compare the ratios. Run:
python bench/tag_speed.py --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from onenet_hf import OneNet, read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--images", type=int, default=30, help="first N dev images, one at a time")
    parser.add_argument("--caption-samples", type=int, nargs="+", default=[0, 50, 100, 200])
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    paths = [e.path for e in read_split(args.data_dir, "dev")[: args.images]]
    for samples in args.caption_samples:  # build each setting's tagger before timing
        net.tag(paths[0], caption_samples=samples)
    seconds: dict[int, list[float]] = {samples: [] for samples in args.caption_samples}
    for path in paths:
        for samples in args.caption_samples:
            start = time.perf_counter()
            net.tag(path, caption_samples=samples)
            seconds[samples].append(time.perf_counter() - start)
    baseline = np.mean(seconds[args.caption_samples[0]])
    results = {}
    for samples, times in seconds.items():
        ms = 1000 * np.array(times)
        row = {"mean_ms": ms.mean(), "p50_ms": np.percentile(ms, 50), "p95_ms": np.percentile(ms, 95)}
        row["ratio_to_first"] = float(np.mean(times) / baseline)
        results[samples] = row
        print(
            f"caption_samples {samples:4d}  mean {row['mean_ms']:7.1f} ms  p50 {row['p50_ms']:7.1f} ms  "
            f"p95 {row['p95_ms']:7.1f} ms  x{row['ratio_to_first']:.2f}"
        )
    print(f"({len(paths)} dev images, one at a time)")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
