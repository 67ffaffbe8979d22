"""Create's targets, each measured with the library's defaults (the CLI's), at 260x260 on this machine.

- Feature visualisation: for N random ImageNet classes (seeded), whether the backbone's top-1 on the image is the
  class, whether it still is after one random crop keeping 90% of each side, resized back, and seconds per image.
- Imagined captions: for M dev images (seeded), their first reference caption is imagined and the image captioned
  (`OneNet.caption`, the release's decoding); a hit shares 2+ content words (stems, `normalize_word`). A caption
  with a word outside the caption vocabulary is refused by `imagine` (the issue's bad input) and counted a miss.
  `imagine_first_sayable` takes the same images, each with the first of its five captions `imagine` accepts: the
  images stay a random sample, only invalid sentences are left out. `imagine_sayable` (seed + 1) draws M other dev
  images whose first caption the decoder can say; sayable first captions also favour common scenes.
- Style transfer: scikit-image photo pairs; the style loss relative to the content photo's (fall = 1 - it) and the
  content loss relative to the style photo's own (must stay below 1), and seconds.
- DeepDream: scikit-image photos at the default stage, the ratio of the stage's activation after to before, and
  seconds; then that ratio on one photo for every stage.
Run (about 35 minutes on 2 cores; nothing else heavy at the same time):
python -m bench.quality.create_quality --data-dir ../shared/datasets/flickr8k --output bench/results/imagine.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image

from bench.common import cpu_model, write_result
from onenet_hf import OneNet, OneNetError, read_split
from onenet_hf.create.dream import STAGE, measure_stage
from onenet_hf.create.optimization import backbone_input, crop_and_resize, from_image, stage_widths
from onenet_hf.create.style import style_losses
from onenet_hf.language.word_vectors import content_words, normalize_word
from onenet_hf.uses.caption import sentence_token_ids

STYLE_PAIRS = (("astronaut", "coffee"), ("chelsea", "rocket"), ("coffee", "astronaut"))
DREAM_PHOTOS = ("chelsea", "astronaut", "coffee")
SENTENCE_SAMPLES = {"imagine": "first", "imagine_sayable": "other_sayable", "imagine_first_sayable": "first_sayable"}


def sample_photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def top1(net: OneNet, pixels: torch.Tensor) -> list[int]:
    processor = net.processor.image_processor
    with torch.no_grad():
        grid = net.model.get_backbone_features(
            backbone_input(net.model, pixels, processor.image_mean, processor.image_std)
        )
        return net.model.get_imagenet_logits(net.model.get_pooled_features(grid)).argmax(-1).tolist()


def stems(text: str) -> set[str]:
    return {normalize_word(word) for word in content_words(text)}


def visualisations(net: OneNet, classes: int, seed: int) -> dict:
    chosen = np.random.default_rng(seed).choice(1000, classes, replace=False).tolist()
    rows, crops = [], torch.Generator().manual_seed(seed)
    for imagenet_class in chosen:
        start = time.perf_counter()
        result = net.visualize(imagenet_class=imagenet_class, seed=seed, progress=False)
        seconds = time.perf_counter() - start
        cropped = crop_and_resize(result.pixels, 0.9, crops)
        rows.append({"class": imagenet_class, "seconds": seconds, "top1": top1(net, result.pixels)[0] == imagenet_class,
                     "top1_after_crop": top1(net, cropped)[0] == imagenet_class})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return {
        "classes": len(rows),
        "top1_%": 100 * np.mean([r["top1"] for r in rows]),
        "top1_after_crop_%": 100 * np.mean([r["top1_after_crop"] for r in rows]),
        "seconds_max": max(r["seconds"] for r in rows),
        "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
        "rows": rows,
    }


def sayable(net: OneNet, text: str) -> bool:
    try:
        sentence_token_ids(net.processor, text)
    except OneNetError:
        return False
    return True


def first_sample(size: int, count: int, seed: int) -> list[int]:
    return sorted(np.random.default_rng(seed).choice(size, count, replace=False).tolist())


def chosen_sentences(net: OneNet, dev: list, count: int, seed: int, sample: str) -> list[tuple[int, str]]:
    """(dev index, sentence) pairs: `first`, the first reference caption of `count` random dev images (seed);
    `first_sayable`, the same images, each with the first of its five captions `imagine` accepts (its first caption,
    refused, if none); `other_sayable`, other images (seed + 1) whose first caption `imagine` accepts."""
    first = first_sample(len(dev), count, seed)
    if sample == "first":
        return [(i, dev[i].captions[0]) for i in first]
    if sample == "first_sayable":
        return [(i, next((c for c in dev[i].captions if sayable(net, c)), dev[i].captions[0])) for i in first]
    if sample != "other_sayable":
        raise ValueError(f"unknown sample {sample!r}: first, first_sayable or other_sayable")
    taken = set(first)
    order = [i for i in np.random.default_rng(seed + 1).permutation(len(dev)).tolist() if i not in taken]
    return [(i, dev[i].captions[0]) for i in order if sayable(net, dev[i].captions[0])][:count]


def imagined_captions(net: OneNet, data_dir: str, count: int, seed: int, sample: str = "first") -> dict:
    """Imagine each `chosen_sentences` sentence and caption the image; a refused sentence is a miss."""
    dev = read_split(data_dir, "dev")
    chosen = chosen_sentences(net, dev, count, seed, sample)
    rows = []
    for index, text in chosen:
        image = Path(dev[index].path).name
        start = time.perf_counter()
        try:
            result = net.imagine(text, seed=seed, progress=False)
        except OneNetError as error:  # a word outside the caption vocabulary: counted as a miss, and said
            rows.append({"image": image, "sentence": text, "error": str(error), "shared": 0, "hit": False})
            print(json.dumps(rows[-1]), flush=True)
            continue
        seconds = time.perf_counter() - start
        caption = net.caption(result.images[0])[0].text
        shared = sorted(stems(text) & stems(caption))
        rows.append({"image": image, "sentence": text, "caption": caption, "shared": len(shared),
                     "shared_words": shared, "hit": len(shared) >= 2, "seconds": seconds})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    timed = [r["seconds"] for r in rows if "seconds" in r]
    return {
        "sentences": len(rows),
        "refused": sum("error" in r for r in rows),
        "hits_%": 100 * np.mean([r["hit"] for r in rows]),
        "seconds_max": max(timed),
        "seconds_mean": float(np.mean(timed)),
        "rows": rows,
    }


def style_transfers(net: OneNet) -> dict:
    rows = []
    for content_name, style_name in STYLE_PAIRS:
        content, style = sample_photo(content_name), sample_photo(style_name)
        start = time.perf_counter()
        result = net.style(content, style, progress=False)
        seconds = time.perf_counter() - start
        losses = style_losses(net.model, net.processor, result.images[0], content, style, 260)
        fall = 100 * (1 - losses.style)
        rows.append({"content": content_name, "style": style_name, "seconds": seconds, "style_loss_fall_%": fall,
                     "content_loss_vs_style_photo": losses.content})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return {"pairs": rows}


def dreams(net: OneNet) -> dict:
    rows = []
    for name in DREAM_PHOTOS:
        photo = sample_photo(name)
        start = time.perf_counter()
        result = net.dream(photo, progress=False)
        seconds = time.perf_counter() - start
        before = measure_stage(net.model, net.processor, from_image(photo, 260), STAGE).item()
        after = measure_stage(net.model, net.processor, result.pixels, STAGE).item()
        rows.append({"photo": name, "stage": STAGE, "seconds": seconds, "before": before, "after": after,
                     "ratio": after / before})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    stages, photo = [], sample_photo(DREAM_PHOTOS[0])
    for stage in stage_widths(net.model):
        result = net.dream(photo, stage=stage, progress=False)
        before = measure_stage(net.model, net.processor, from_image(photo, 260), stage).item()
        after = measure_stage(net.model, net.processor, result.pixels, stage).item()
        stages.append({"photo": DREAM_PHOTOS[0], "stage": stage, "ratio": after / before})
        print(json.dumps(stages[-1]), flush=True)
    return {"default_stage": rows, "every_stage": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--sentences", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--parts", default="visualize,imagine,imagine_sayable,style,dream", help="also: imagine_first_sayable"
    )
    parser.add_argument("--device", default="cpu", help="where the model runs (cuda: a GPU)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = OneNet.from_pretrained(args.model, device=args.device)
    parts = args.parts.split(",")
    results = {"model": args.model, "device": str(net.model.device), "cpu": cpu_model(),
               "torch_threads": torch.get_num_threads()}  # fmt: skip
    if "visualize" in parts:
        results["visualize"] = visualisations(net, args.classes, args.seed)
    for part, sample in SENTENCE_SAMPLES.items():
        if part in parts:
            results[part] = imagined_captions(net, args.data_dir, args.sentences, args.seed, sample)
    if "style" in parts:
        results["style"] = style_transfers(net)
    if "dream" in parts:
        results["dream"] = dreams(net)
    summary = {part: {k: v for k, v in value.items() if k != "rows"} for part, value in results.items()
               if isinstance(value, dict)}  # fmt: skip
    print(json.dumps(summary, indent=2))
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
