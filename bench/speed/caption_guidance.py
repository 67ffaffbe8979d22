"""Caption latency with and without ImageNet label guidance, side by side in one run (label guidance should cost at
most 1.5 times the unguided caption, beam 3, end to end from image files).

    python -m bench.speed.caption_guidance --output bench/results/caption_guidance/caption_guidance_1.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import cpu_model, write_result
from onenet_hf import OneNet
from onenet_hf.data.datasets import read_split
from onenet_hf.label_guidance import LABEL_THRESHOLD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/coco-mini-dev")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds of each setting")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    photos = [e.path for e in read_split(args.data_dir, "dev", "coco")]
    net = OneNet.from_pretrained(args.model)
    net.caption(photos[:4], imagenet_labels=LABEL_THRESHOLD)  # warm-up: weights, GloVe, label tables
    seconds = {"off": [], "on": []}
    for _ in range(args.rounds):
        for name, threshold in (("off", 0.0), ("on", LABEL_THRESHOLD)):
            start = time.perf_counter()
            net.caption(photos, imagenet_labels=threshold)
            seconds[name].append(time.perf_counter() - start)
    per_image = {name: min(times) / len(photos) * 1000 for name, times in seconds.items()}
    result = {
        "cpu": cpu_model(),
        "photos": len(photos),
        "seconds": seconds,
        "ms_per_image_best": per_image,
        "ratio_on_to_off": per_image["on"] / per_image["off"],
    }
    write_result(result, Path(args.output))
    ratio = result["ratio_on_to_off"]
    print(f"{per_image['off']:.1f} ms/image off, {per_image['on']:.1f} on: {ratio:.2f}x ({result['cpu']})")


if __name__ == "__main__":
    main()
