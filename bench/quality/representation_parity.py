"""How close each ONNX variant's image side is to PyTorch's: cosine of the representation and of the pooled
backbone features on Flickr8k dev photos (what `backend="auto"` feeds captions, tags and similar images). Run:
python -m bench.quality.representation_parity --images 200
"""

from __future__ import annotations

import argparse

import torch

from onenet_hf import OneNet, read_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--images", type=int, default=200, help="first N dev photos")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    paths = [e.path for e in read_split(args.data_dir, "dev")[: args.images]]
    for variant in ("fp32", "int8-dynamic"):
        onnx = OneNet.from_pretrained(args.model, backend="auto", onnx_variant=variant).onnx
        cosines = {"representation": [], "pooled features": []}
        for start in range(0, len(paths), 25):
            pixels = net.processor(images=paths[start : start + 25])["pixel_values"]
            with torch.inference_mode():
                grid = net.model.get_backbone_features(pixels)
                expected = net.model.get_image_features(backbone_features=grid), net.model.get_pooled_features(grid)
            for name, want, got in zip(cosines, expected, onnx.get_image_and_pooled_features(pixels), strict=True):
                cosines[name].append(torch.nn.functional.cosine_similarity(want, got))
        for name, parts in cosines.items():
            values = torch.cat(parts)
            print(f"{variant} {name:16s} cosine to PyTorch: min {values.min():.5f}  mean {values.mean():.5f}")
    print(f"({len(paths)} dev photos)")


if __name__ == "__main__":
    main()
