"""Latency of tagging one image (decode, backbone, tag head, sampled captions, ImageNet term) per setting.

A setting is CAPTION_SAMPLES:IMAGENET_WEIGHT. Settings are interleaved image by image, so a noisy machine slows
them alike; compare the ratios. Run:
python -m bench.speed.tag_speed --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import write_result
from onenet_hf import OneNet, read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--images", type=int, default=30, help="first N dev images, one at a time")
    help_text = "CAPTION_SAMPLES:IMAGENET_WEIGHT settings; ratios are to the first"
    parser.add_argument("--settings", nargs="+", default=["0:0", "100:0", "100:0.5", "200:0.5"], help=help_text)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    settings = {text: (int(text.split(":")[0]), float(text.split(":")[1])) for text in args.settings}
    net = OneNet.from_pretrained(args.model)
    paths = [e.path for e in read_split(args.data_dir, "dev")[: args.images]]
    for samples, weight in settings.values():  # build each setting's tagger before timing
        net.tag(paths[0], caption_samples=samples, imagenet_weight=weight)
    seconds: dict[str, list[float]] = {text: [] for text in settings}
    for path in paths:
        for text, (samples, weight) in settings.items():
            start = time.perf_counter()
            net.tag(path, caption_samples=samples, imagenet_weight=weight)
            seconds[text].append(time.perf_counter() - start)
    baseline = np.mean(seconds[args.settings[0]])
    results = {}
    for text, times in seconds.items():
        ms = 1000 * np.array(times)
        row = {"mean_ms": ms.mean(), "p50_ms": np.percentile(ms, 50), "p95_ms": np.percentile(ms, 95)}
        row["ratio_to_first"] = float(np.mean(times) / baseline)
        results[text] = row
        print(
            f"samples:imagenet_weight {text:>8}  mean {row['mean_ms']:7.1f} ms  p50 {row['p50_ms']:7.1f} ms  "
            f"p95 {row['p95_ms']:7.1f} ms  x{row['ratio_to_first']:.2f}"
        )
    print(f"({len(paths)} dev images, one at a time)")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
