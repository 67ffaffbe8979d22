"""Tagging per backend and number of sampled captions: Flickr8k dev precision@5 and the latency of one image.

A setting is BACKEND:CAPTION_SAMPLES, BACKEND one of torch, onnx-fp32, onnx-int8 (`OneNet.from_pretrained(...,
backend="auto", onnx_variant=...)`: the ONNX graphs run the image side and sample the captions, the heads stay
PyTorch). Precision is measured end to end (photo files to tags, `OneNet.tag`) on every dev photo, int8 one
photo at a time (its dynamic quantisation takes one scale per batch, so batched int8 tags depend on the batch);
latency on the first `--images` dev photos, one at a time, settings interleaved photo by photo so a noisy
machine slows them alike. Run:
python -m bench.quality.tag_backends --output bench/results/tag_backends/tag_backends_1.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.evaluation import tag_precision


def load(model: str, backend: str) -> OneNet:
    if backend == "torch":
        return OneNet.from_pretrained(model)
    return OneNet.from_pretrained(model, backend="auto", onnx_variant=backend.removeprefix("onnx-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--images", type=int, default=30, help="first N dev photos timed, one at a time")
    parser.add_argument("--settings", nargs="+", default=["torch:100", "onnx-fp32:100", "onnx-int8:100"])
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    settings = {text: (text.split(":")[0], int(text.split(":")[1])) for text in args.settings}
    nets = {backend: load(args.model, backend) for backend in {backend for backend, _ in settings.values()}}
    examples = read_split(args.data_dir, "dev")
    results = {}
    for text, (backend, samples) in settings.items():
        if backend == "onnx-int8":  # its quantisation scales depend on the batch: each photo alone, as the Space
            tagged = [nets[backend].tag(e.path, caption_samples=samples)[0] for e in examples]
        else:
            tagged = nets[backend].tag([e.path for e in examples], caption_samples=samples)
        tags = [[w.word for w in image.words] for image in tagged]
        results[text] = {"tag_precision@5": tag_precision(tags, [e.captions for e in examples])}
        print(f"{text:16s} dev precision@5 {results[text]['tag_precision@5']:.4f}", flush=True)
    paths = [e.path for e in examples[: args.images]]
    for backend, samples in settings.values():
        nets[backend].tag(paths[0], caption_samples=samples)  # warm
    seconds: dict[str, list[float]] = {text: [] for text in settings}
    for path in paths:
        for text, (backend, samples) in settings.items():
            start = time.perf_counter()
            nets[backend].tag(path, caption_samples=samples)
            seconds[text].append(time.perf_counter() - start)
    baseline = np.mean(seconds[args.settings[0]])
    for text, times in seconds.items():
        ms = 1000 * np.array(times)
        results[text].update(p50_ms=np.percentile(ms, 50), mean_ms=ms.mean(), ratio_to_first=np.mean(times) / baseline)
        row = results[text]
        print(f"{text:16s} p50 {row['p50_ms']:6.1f} ms  mean {row['mean_ms']:6.1f} ms  x{row['ratio_to_first']:.2f}")
    print(f"({len(examples)} dev images for precision, {len(paths)} timed one at a time)")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
