"""Write the bank whose mean `onenet imagine` starts from: pooled backbone features of 512 Flickr8k training photos.

The bank depends only on the frozen backbone, not on a trained checkpoint, so it ships with the package
(`onenet_hf/resources/imagine_bank_efficientnet-lite2.npy`, float16). Training photos only: dev photos are
measured. Run:
python tools/imagine_bank.py --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse

import numpy as np

from onenet_hf import OneNet, read_split
from onenet_hf.create.imagine import BANK_SIZE, bank_path, build_feature_bank
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k", help="any checkpoint: only its backbone")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--count", type=int, default=BANK_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    paths = [example.path for example in read_split(args.data_dir, "train")]
    bank = build_feature_bank(net.model, net.processor, paths, args.count, args.seed, args.cache_dir)
    out = bank_path(net.model.config.backbone_name)
    partial = out.with_suffix(".partial.npy")
    np.save(partial, bank)
    partial.replace(out)  # atomically: a reader never sees half a bank
    print(f"wrote {out}: {bank.shape[0]} photos x {bank.shape[1]} channels, {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
