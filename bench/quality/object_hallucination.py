"""Which objects captions invent and which they miss, by COCO category: the counts behind CHAIRi.

    onenet evaluate --data-dir ../shared/datasets/coco-mini-dev --data-format coco --split dev \
        --captions-output runs/coco-captions.tsv
    python -m bench.quality.object_hallucination runs/coco-captions.tsv \
        ../shared/datasets/coco-mini-dev/instances_dev.json
"""

from __future__ import annotations

import argparse
from collections import Counter

from onenet_hf.data.datasets import read_coco_objects
from onenet_hf.evaluation import caption_objects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captions", help="`onenet evaluate --captions-output` file: FILE<TAB>caption lines")
    parser.add_argument("instances", help="the COCO instances JSON of the same photos")
    parser.add_argument("--top", type=int, default=10, help="categories listed each way")
    args = parser.parse_args()
    objects = read_coco_objects(args.instances)
    invented, missed = Counter(), Counter()
    for line in open(args.captions, encoding="utf-8"):
        name, caption = line.rstrip("\n").split("\t", 1)
        named = caption_objects(caption)
        invented.update(named - objects[name])
        missed.update(objects[name] - named)
    print(f"invented ({sum(invented.values())}):", ", ".join(f"{c} {n}" for c, n in invented.most_common(args.top)))
    print(f"missed ({sum(missed.values())}):", ", ".join(f"{c} {n}" for c, n in missed.most_common(args.top)))


if __name__ == "__main__":
    main()
