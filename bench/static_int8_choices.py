"""Which image-encoder nodes static int8 leaves in fp32, chosen by measurement in one run.

Each choice is quantised by the export's `quantize_static_int8` on the same calibration photos, then timed
network-only (batch 32, the first --images dev photos) and compared with the onnxruntime fp32 encoder on all dev
photos: representation cosine (mean, 1st percentile, min), the share of beam-3 captions left unchanged, caption
BLEU-4 / CIDEr and `retrieval`-method recall. A control row adds random (isotropic) noise to the fp32
representations (not to the pooled features) at the first choice's mean cosine: how much a cosine alone says
about the captions.
Run (about 8 minutes on 2 cores; nothing else heavy at the same time):
python bench/static_int8_choices.py --calibration-images /tmp/calibration \
  --output bench/results/embed_speed/static_int8_choices.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from embed_speed import (  # bench/ is the script's folder, so on sys.path
    beam3_captions,
    cosines,
    image_side,
    quality,
    timed,
)
from imagine_quality import cpu_model

from export.onnx_export import quantize_static_int8, static_int8_exclusions
from onenet_hf import OneNet, read_split
from onenet_hf.indexing import list_images
from onenet_hf.onnx_backend import MANIFEST_FILE, session_options


def choices(graph: Path) -> dict[str, list[str]]:
    """Node lists left in fp32, by name; the first is the 2026-12-03 and -04 releases', the second the export's."""
    nodes = onnx.load(str(graph)).graph.node
    linear = [node.name for node in nodes if node.op_type == "Add" or "_project_conv" in node.name]
    return {
        "stem, last convolution, projection": static_int8_exclusions(graph, ()),
        "+ blocks 0-1 (the export's choice)": static_int8_exclusions(graph),
        "+ blocks 0-2": static_int8_exclusions(graph, (0, 1, 2)),
        "+ blocks 0-1 and 18-20": static_int8_exclusions(graph, (0, 1, 18, 19, 20)),
        "+ every projecting convolution and residual add": static_int8_exclusions(graph, ()) + linear,
    }


def encoder(path: Path):
    """An onnxruntime session of one image-encoder file, with the library backend's session options."""
    session = onnxruntime.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])

    def encode(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled = session.run(None, {"pixel_values": pixels.numpy()})
        return torch.from_numpy(embeds), torch.from_numpy(pooled)

    return encode


def compared(net, examples, reference: dict, embeds: torch.Tensor, pooled: torch.Tensor) -> dict:
    captions = beam3_captions(net, embeds)
    unchanged = np.mean([a == b for a, b in zip(captions, reference["captions"], strict=True)])
    return {
        "cosine_to_fp32": cosines(embeds, reference["embeds"]),
        "pooled_cosine_to_fp32": cosines(pooled, reference["pooled"]),
        "captions_unchanged_%": 100 * float(unchanged),
        **quality(net, embeds, pooled, examples, captions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k", help="a checkpoint with its ONNX export")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--calibration-images", required=True, help="folder of calibration photos (train photos)")
    parser.add_argument("--calibration-count", type=int, default=1024)
    parser.add_argument("--images", type=int, default=500, help="dev photos timed (the first N)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    net.model.eval()
    manifest = json.loads((Path(args.model) / "onnx" / MANIFEST_FILE).read_text())
    fp32_graph = Path(args.model) / "onnx" / manifest["graphs"]["image_encoder"]["files"]["fp32"]["path"]
    examples = read_split(args.data_dir, "dev")
    pixel_values = net.processor(images=[e.path for e in examples])["pixel_values"]
    calibration = list_images(args.calibration_images)[: args.calibration_count]  # as `onenet export` picks them
    batches = [
        net.processor(images=calibration[i : i + 32])["pixel_values"].numpy() for i in range(0, len(calibration), 32)
    ]
    fp32 = encoder(fp32_graph)
    embeds, pooled = image_side(fp32, pixel_values)
    reference = {"embeds": embeds, "pooled": pooled, "captions": beam3_captions(net, embeds)}
    results = {
        "cpu": cpu_model(),
        "calibration_images": len(calibration),
        "timed_images": args.images,
        "fp32": {"images_per_s": timed(fp32, pixel_values[: args.images])[0]}
        | compared(net, examples, reference, embeds, pooled),
        "choices": {},
    }
    print(f"fp32: {json.dumps(results['fp32'])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="onenet-int8-choices-") as folder:
        for name, fp32_nodes in choices(fp32_graph).items():
            path = Path(folder) / "encoder.onnx"
            start = time.perf_counter()
            quantize_static_int8(fp32_graph, path, batches, fp32_nodes)
            seconds = time.perf_counter() - start
            int8 = encoder(path)
            row = {"fp32_nodes": len(fp32_nodes), "quantise_s": seconds}
            row["images_per_s"] = timed(int8, pixel_values[: args.images])[0]
            row |= compared(net, examples, reference, *image_side(int8, pixel_values))
            results["choices"][name] = row
            print(f"{name}: {json.dumps(row)}", flush=True)
    first = next(iter(results["choices"].values()))["cosine_to_fp32"]["mean"]
    noise = torch.randn(reference["embeds"].shape, generator=torch.Generator().manual_seed(0))
    scale = np.sqrt(1 / first**2 - 1)  # orthogonal noise of this relative norm leaves cosine `first`
    noisy = (
        reference["embeds"]
        + noise / noise.norm(dim=1, keepdim=True) * reference["embeds"].norm(dim=1, keepdim=True) * scale
    )
    results["noise_control"] = {"relative_norm": float(scale)} | compared(net, examples, reference, noisy, pooled)
    print(f"noise control: {json.dumps(results['noise_control'])}", flush=True)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
