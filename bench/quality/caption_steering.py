"""Caption quality with beam search steered towards the words of the backbone's ImageNet labels, per weight.

Flickr8k dev (in domain) and coco-mini-dev (out of domain), beam 3, n-gram blocking 2 unless told otherwise;
weight 0 is plain beam search. The steering is `imagenet_token_bias`, added at every step. Run:
python -m bench.quality.caption_steering --model checkpoints/onenet-flickr8k --output runs/steering.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import caption_diversity, evaluate_on_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--flickr8k", default="../shared/datasets/flickr8k")
    parser.add_argument("--coco", default="../shared/datasets/coco-mini-dev")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 2.0, 4.0])
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--no-repeat-ngram-size", type=int, default=2)
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    rows = []
    for name, data_dir, data_format in (
        ("coco-mini-dev", args.coco, "coco"),
        ("flickr8k-dev", args.flickr8k, "flickr8k"),
    ):
        examples = read_split(data_dir, "dev", data_format)
        grids = cached_backbone_features(
            net.model, net.processor.image_processor, [e.path for e in examples], args.cache_dir
        )
        for weight in args.weights:
            scores, texts = evaluate_on_features(
                net.model,
                net.processor,
                grids,
                examples,
                args.beam_size,
                no_repeat_ngram_size=args.no_repeat_ngram_size,
                imagenet_steering=weight,
            )
            row = {"set": name, "weight": weight, **scores, **caption_diversity(texts), "first_captions": texts[:3]}
            rows.append(row)
            figures = "  ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float) and k != "weight")
            print(f"{name}  weight {weight:g}  {figures}", flush=True)
    if args.output:
        write_result(rows, Path(args.output))


if __name__ == "__main__":
    main()
