"""Tag precision@5 over a grid of caption and ImageNet weights, on Flickr8k dev and an out-of-domain COCO set.

Each image's three votes (tag head, sampled captions, ImageNet labels) are computed once; every pair of weights
then only re-combines them (`combine_tag_scores`, the tagger's own rule). Run:
python -m bench.quality.tag_weights --model checkpoints/onenet-flickr8k --output runs/tags/weights.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import image_inputs_from_features, tag_precision
from onenet_hf.uses.tag import CAPTION_SAMPLES, Tagger, combine_tag_scores


def votes(
    net: OneNet, tagger: Tagger, data_dir: str, data_format: str, cache_dir: str
) -> tuple[list, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A split's reference captions and each image's head log-probs, caption chances and label chances."""
    examples = read_split(data_dir, "dev", data_format)
    grids = cached_backbone_features(net.model, net.processor.image_processor, [e.path for e in examples], cache_dir)
    pooled, representations = image_inputs_from_features(net.model, grids)
    parts = [[], [], []]
    for start in range(0, len(examples), tagger.batch_size):
        batch = representations[start : start + tagger.batch_size]
        parts[0].append(tagger.head_log_probs(batch))
        parts[1].append(tagger.caption_chances(batch))
        parts[2].append(tagger.label_chances(pooled[start : start + tagger.batch_size]))
    return [e.captions for e in examples], *(torch.cat(part) for part in parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--flickr8k", default="../shared/datasets/flickr8k")
    parser.add_argument("--coco", default="../shared/datasets/coco-mini-dev")
    parser.add_argument("--caption-weights", type=float, nargs="+", default=[1.5, 2.0, 2.5])
    parser.add_argument("--imagenet-weights", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    tagger = Tagger(net.model, net.processor.tokenizer, caption_samples=CAPTION_SAMPLES)
    sets = {
        "flickr8k-dev": votes(net, tagger, args.flickr8k, "flickr8k", args.cache_dir),
        "coco-mini-dev": votes(net, tagger, args.coco, "coco", args.cache_dir),
    }
    rows = []
    for caption_weight in args.caption_weights:
        for imagenet_weight in args.imagenet_weights:
            row = {"caption_weight": caption_weight, "imagenet_weight": imagenet_weight}
            for name, (captions, head, chances, labels) in sets.items():
                scores = combine_tag_scores(head, chances, labels, caption_weight, imagenet_weight)
                tags = [[tagger.words[i] for i in top] for top in scores.topk(5, dim=1).indices.tolist()]
                row[name] = tag_precision(tags, captions)
            rows.append(row)
            print("  ".join(f"{key} {value:.4f}" for key, value in row.items()), flush=True)
    if args.output:
        write_result(rows, Path(args.output))


if __name__ == "__main__":
    main()
