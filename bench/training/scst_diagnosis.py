"""Where self-critical training moves the decoder: caption scores on training images as well as dev, before and
after, greedy and beam.

If SCST over-fitted the training images, their greedy CIDEr would rise while dev's falls; if it only narrows the
sampling distribution, neither moves much while the sampled reward climbs. The SCST weights are read from a
`train-scst` output's `scst_state.pt` (its last epoch), applied to the starting model. Run:
python -m bench.training.scst_diagnosis --model runs/seeds/seed-0 --scst-state runs/scst-seed0-lr1e-5/scst_state.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import caption_diversity, evaluate_on_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="runs/seeds/seed-0")
    parser.add_argument("--scst-state", action="append", default=[], help="one or more train-scst states")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--train-images", type=int, default=1000, help="the first N training images")
    parser.add_argument("--beam-sizes", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--no-repeat-ngram-size", type=int, default=0)
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    model, processor = net.model, net.processor
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    splits = {
        "train": read_split(args.data_dir, "train")[: args.train_images],
        "dev": read_split(args.data_dir, "dev"),
    }
    grids = {
        split: cached_backbone_features(model, processor.image_processor, [e.path for e in ex], args.cache_dir)
        for split, ex in splits.items()
    }
    rows = []
    for state_path in [None, *args.scst_state]:
        model.load_state_dict(start, strict=False)
        epoch = 0
        if state_path:
            state = torch.load(state_path, map_location=model.device, weights_only=False)
            model.load_state_dict(state["trainable"], strict=False)
            epoch = state["epoch"]
        for split, examples in splits.items():
            for beam_size in args.beam_sizes:
                with torch.no_grad():
                    scores, captions = evaluate_on_features(
                        model, processor, grids[split], examples, beam_size,
                        no_repeat_ngram_size=args.no_repeat_ngram_size,
                    )  # fmt: skip
                row = {"scst_state": state_path, "scst_epoch": epoch, "split": split, "images": len(examples),
                       "beam_size": beam_size, **scores, **caption_diversity(captions)}  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.output:
        write_result(rows, Path(args.output))


if __name__ == "__main__":
    main()
