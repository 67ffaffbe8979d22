"""PyTorch eager vs onnxruntime (fp32, int8): caption latency at batch 1 and gallery-embedding throughput.

    python -m bench.speed.onnx_speed --model checkpoints/onenet-flickr8k [--images DIR] [--output bench.json]

All backends run in this one process on the same images, so the printed ratios compare like with like.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from bench.common import write_result
from onenet_hf import OneNet
from onenet_hf.data.example_photos import example_photos


def caption_latencies(net: OneNet, images: list, beam_size: int, repeats: int) -> list[float]:
    """Seconds per image, end to end (load, preprocess, encode, beam search), batch 1."""
    net.caption(images[0], beam_size=beam_size)  # warm-up
    times = []
    for _ in range(repeats):
        for image in images:
            start = time.perf_counter()
            net.caption(image, beam_size=beam_size)
            times.append(time.perf_counter() - start)
    return times


def embedding_throughput(net: OneNet, images: list, batch_size: int, repeats: int) -> float:
    """Images per second, end to end (load, preprocess, encode), in batches of `batch_size`."""
    batch = (images * (batch_size // len(images) + 1))[:batch_size]
    with torch.inference_mode():
        net.model.get_image_features(net.processor(images=batch[:2])["pixel_values"])  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            net.model.get_image_features(net.processor(images=batch)["pixel_values"])
    return batch_size * repeats / (time.perf_counter() - start)


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--onnx-dir", default=None)
    parser.add_argument("--images", default=None, help="folder of images (default: scikit-image example photos)")
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--variants", default="fp32,int8", help="ONNX variants to compare with PyTorch")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()

    images = sorted(Path(args.images).iterdir())[:16] if args.images else example_photos()
    backends = {"pytorch": OneNet.from_pretrained(args.model, device=args.device)}
    for variant in args.variants.split(","):
        backends[f"onnx-{variant}"] = OneNet.from_pretrained(
            args.model, backend="onnx", onnx_dir=args.onnx_dir, onnx_variant=variant
        )
    results = {}
    for name, net in backends.items():
        latencies = caption_latencies(net, images, args.beam_size, args.repeats)
        results[name] = {
            "caption_p50_ms": 1000 * percentile(latencies, 50),
            "caption_p90_ms": 1000 * percentile(latencies, 90),
            "embed_images_per_s": embedding_throughput(net, images, args.batch_size, args.repeats),
            "providers": getattr(net.model, "providers", [args.device]),
        }
    base = results["pytorch"]
    print(
        f"{len(images)} images x {args.repeats}, beam {args.beam_size}, embedding batch {args.batch_size}, "
        f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}"
    )
    print(f"{'backend':<12} {'caption p50':>12} {'p90':>9} {'speed-up':>9} {'embed img/s':>12} {'speed-up':>9}")
    for name, r in results.items():
        r["caption_speedup"] = base["caption_p50_ms"] / r["caption_p50_ms"]
        r["embed_speedup"] = r["embed_images_per_s"] / base["embed_images_per_s"]
        print(
            f"{name:<12} {r['caption_p50_ms']:>10.1f}ms {r['caption_p90_ms']:>7.1f}ms {r['caption_speedup']:>8.2f}x "
            f"{r['embed_images_per_s']:>12.1f} {r['embed_speedup']:>8.2f}x"
        )
    if args.output:
        write_result({"arguments": vars(args), "results": results}, Path(args.output))


if __name__ == "__main__":
    main()
