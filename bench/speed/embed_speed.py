"""Gallery embedding speed per backend and precision, and what the fast paths cost in accuracy, in one run.

Network only: images a second of the image side (representation + pooled features) on preprocessed dev photos,
batch 32: PyTorch fp32 eager, channels_last, bf16 autocast (AMX) on channels_last, with `--compile` those two
under `torch.compile` as well, onnxruntime fp32 and the export's static int8 image encoder (`onenet export
--calibration-images`). Warm-up (each batch shape once, compilation included) is timed apart. End to end:
`build_index` on the same photos into a fresh index (listing, hashing, decoding, resizing, the network, shards
and SQLite), as `onenet index` runs it, for each backend the index can use. Accuracy: each fast path's
representation against PyTorch fp32 (cosine per photo: mean, 1st percentile, min); with `--quality`, dev caption
BLEU-4/CIDEr (beam 3) and retrieval recall (`retrieval` method) from each backend's image side on all dev photos.
Run: python -m bench.speed.embed_speed --output bench/results/embed_speed/embed_speed.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.common import cpu_model, write_result
from onenet_hf import OneNet, read_split
from onenet_hf.evaluation import caption_metrics, caption_queries, retrieval_metrics, retrieval_similarity
from onenet_hf.gallery.build import build_index
from onenet_hf.gallery.embedding import onnx_embedder
from onenet_hf.onnx.backend import OnnxOneNetBackend
from onenet_hf.onnx.graphs import OnnxGalleryEncoder
from onenet_hf.uses.caption import captions_from_embeddings


def image_side(encoder, pixel_values: torch.Tensor, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(image_embeds, pooled_features) of every image, batch by batch: `encoder` is a callable of pixels."""
    outputs = [encoder(pixel_values[start : start + batch_size]) for start in range(0, len(pixel_values), batch_size)]
    return torch.cat([o[0] for o in outputs]).float(), torch.cat([o[1] for o in outputs]).float()


def torch_encoder(model, channels_last: bool = False, bf16: bool = False, compiled: bool = False):
    def network(pixels: torch.Tensor):
        grid = model.get_backbone_features(pixels)
        return model.get_image_features(backbone_features=grid), model.get_pooled_features(grid)

    network = torch.compile(network, dynamic=False) if compiled else network  # one static graph per batch shape

    def encode(pixels: torch.Tensor):
        if channels_last:
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return network(pixels)

    return encode


def timed(encoder, pixel_values: torch.Tensor, batch_size: int = 32) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(images a second, warm-up seconds, image_embeds, pooled_features). The warm-up runs the first batch and the
    last, shorter one, so first-run allocations and compilation for either shape stay out of the timing."""
    start = time.perf_counter()
    image_side(encoder, pixel_values[:batch_size], batch_size)
    if len(pixel_values) % batch_size:
        image_side(encoder, pixel_values[-(len(pixel_values) % batch_size) :], batch_size)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    embeds, pooled = image_side(encoder, pixel_values, batch_size)
    return len(pixel_values) / (time.perf_counter() - start), warmup_s, embeds, pooled


def build_rate(build) -> float:
    """Images a second of `build(folder)` (a `build_index` call into a fresh index folder), end to end."""
    folder = Path(tempfile.mkdtemp(prefix="onenet-embed-speed-"))
    try:
        start = time.perf_counter()
        index = build(folder / "index")
        return len(index) / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder)


def cosines(embeds: torch.Tensor, reference: torch.Tensor) -> dict:
    values = F.cosine_similarity(embeds, reference).numpy()
    return {"mean": float(values.mean()), "p1": float(np.percentile(values, 1)), "min": float(values.min())}


def beam3_captions(net: OneNet, embeds: torch.Tensor) -> list[str]:
    """The release's beam-3 captions of image representations, 100 at a time."""
    with torch.inference_mode():
        return [
            c.text
            for i in range(0, len(embeds), 100)
            for c in captions_from_embeddings(net.model, net.processor, embeds[i : i + 100], 3)
        ]


def dev_retrieval(net: OneNet, pooled: torch.Tensor, examples) -> tuple[torch.Tensor, torch.Tensor]:
    """The `retrieval` method's (texts, images) scores of every dev caption against `pooled`'s photos, and each
    caption's photo."""
    queries, owners = caption_queries(examples)
    return retrieval_similarity(net.model, queries, pooled), owners


def quality(
    net: OneNet,
    embeds: torch.Tensor,
    pooled: torch.Tensor,
    examples,
    captions: list[str] | None = None,
    retrieval: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """Dev caption metrics (beam 3; `captions` if already decoded from `embeds`) and retrieval recall
    (`retrieval` if already scored by `dev_retrieval`) from one backend's image side."""
    captions = beam3_captions(net, embeds) if captions is None else captions
    metrics = caption_metrics([e.captions for e in examples], captions, ("BLEU-4", "CIDEr"))
    return metrics | retrieval_metrics(*(retrieval or dev_retrieval(net, pooled, examples)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--images", type=int, default=500, help="dev photos timed (the first N)")
    parser.add_argument("--quality", action="store_true", help="also caption and retrieval figures on all dev")
    parser.add_argument("--compile", action="store_true", help="also the channels_last rows under torch.compile")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    started = time.perf_counter()
    net = OneNet.from_pretrained(args.model)
    model = net.model.eval()
    examples = read_split(args.data_dir, "dev")
    paths = [e.path for e in examples[: args.images]]
    pixel_values = net.processor(images=paths)["pixel_values"]
    onnx = {variant: OnnxOneNetBackend(args.model, variant=variant) for variant in ("fp32", "int8-static")}
    encoders = {
        "torch fp32": torch_encoder(model),
        "torch fp32 channels_last": torch_encoder(model, channels_last=True),
        "torch bf16 autocast channels_last": torch_encoder(model, channels_last=True, bf16=True),
        **(
            {
                "torch fp32 channels_last compiled": torch_encoder(model, channels_last=True, compiled=True),
                "torch bf16 autocast channels_last compiled": torch_encoder(
                    model, channels_last=True, bf16=True, compiled=True
                ),
            }
            if args.compile
            else {}
        ),
        **{f"onnxruntime {v}": b.get_image_and_pooled_features for v, b in onnx.items()},
    }
    results = {"cpu": cpu_model(), "torch": torch.__version__, "images": len(paths), "network_only": {}}
    results |= {"end_to_end": {}, "quality": {}}
    if args.compile:
        results["compile"] = {"mode": "default", "dynamic": False}
    reference = None
    for name, encoder in encoders.items():
        rate, warmup_s, embeds, pooled = timed(encoder, pixel_values)
        reference = embeds if reference is None else reference
        row = {"images_per_s": rate, "warmup_s": warmup_s, "cosine_to_fp32": cosines(embeds, reference)}
        results["network_only"][name] = row
        print(f"{name:42s} {rate:7.1f} img/s (warm-up {warmup_s:.1f} s)  cosine to fp32 {row['cosine_to_fp32']}")
    model.to(memory_format=torch.contiguous_format)
    embedders = {f"onnxruntime {v}": onnx_embedder(OnnxGalleryEncoder(args.model, variant=v)) for v in onnx}
    for name, embedder in {"torch fp32": None, **embedders}.items():
        rate = build_rate(lambda folder, e=embedder: build_index(model, net.processor, paths, folder, embedder=e))
        results["end_to_end"][name] = {"images_per_s": rate}
        print(f"build_index, {name:24s} {rate:7.1f} img/s (decode, hashing, shards and SQLite included)")
    if args.quality:
        everything = net.processor(images=[e.path for e in examples])["pixel_values"]
        for name in ("torch fp32", "onnxruntime int8-static"):
            embeds, pooled = image_side(encoders[name], everything)
            results["quality"][name] = quality(net, embeds, pooled, examples)
            print(f"{name}: {results['quality'][name]}")
    results["seconds"] = time.perf_counter() - started
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
