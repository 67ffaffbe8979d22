"""Which image-encoder nodes static int8 leaves in fp32, and what bias correction adds, chosen by measurement.

Each choice is quantised by the export's `quantize_static_int8` on the same calibration photos (with the export's
bias correction and min/max ranges unless the row says otherwise), then timed network-only (batch 32, the first
--images dev photos) and compared with the onnxruntime fp32 encoder on all dev photos: representation cosine (mean,
1st percentile, min), the share of beam-3 captions left unchanged, caption BLEU-4 / CIDEr, `retrieval`-method
recall, and each figure's gap to fp32 with its paired bootstrap standard error and 95% interval (per-photo values,
10,000 resamples of the photos; all but BLEU-4, which has no per-photo share). Two controls say how much the figures
move under changes that are not int8's: random (isotropic) noise added to the fp32 representations at the first
choice's mean cosine, and the fp32 encoder on the dev photos saved once more as JPEG at quality 95. With
--draw-calibration, the --draw-row choice (the export's by default) is quantised again on each further folder of
calibration photos, and each figure's gap is summarised over these equally made encoders (mean, SD): what the method
loses, against what one int8 encoder happens to lose.
Run (nothing else heavy at the same time). Most of a run is quantising: about 2.5 minutes per min/max encoder and 4.5
per percentile one on 2 cores (README run 6: 16.5 minutes for five encoders; run 7: 24 minutes):
python -m bench.quality.static_int8_choices --calibration-images /tmp/calibration \
  --output bench/results/static_int8_choices/static_int8_choices_1.json
Draws (README, "Four equally made encoders"), each with the settings of --draw-row (the export's choice by default):
  --rows "+ blocks 0-1 (the export's choice)" --draw-calibration FOLDER ...
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch
from PIL import Image

from bench.common import cpu_model, write_result
from bench.speed.embed_speed import (
    beam3_captions,
    cosines,
    dev_retrieval,
    image_side,
    quality,
    timed,
)
from onenet_hf import OneNet, read_split
from onenet_hf.evaluation import cider_per_image, retrieval_ranks
from onenet_hf.gallery.build import list_images
from onenet_hf.onnx.backend import MANIFEST_FILE, MAX_CALIBRATION_IMAGES, session_options
from onenet_hf.onnx.export import (
    BIAS_CORRECTION_IMAGES,
    nodes_after_last_convolution,
    quantize_static_int8,
    static_int8_exclusions,
)


def head_rounded(graph: Path) -> list[str]:
    """The export's node list as it was until 2026-12-05: of the head after the last convolution, only the projection
    (Gemm) in fp32, so onnxruntime rounded the grid mean feeding the norms, their outputs and the representation."""
    nodes = onnx.load(str(graph)).graph.node
    after = set(nodes_after_last_convolution(nodes))
    rounded = {node.name for node in nodes if node.name in after and node.op_type != "Gemm"}
    return [name for name in static_int8_exclusions(graph) if name not in rounded]


def choices(graph: Path) -> dict[str, tuple[list[str], int, float | None]]:
    """(node list left in fp32, photos the bias correction reads, activation percentile or None for min/max ranges)
    by row name; the first has the 2026-12-03 and -04 releases' blocks (no block in fp32; it was named "stem, last
    convolution, projection" until the nodes after the last convolution all stayed fp32), the second is the
    export's choice."""
    blocks_01, corrected = static_int8_exclusions(graph), BIAS_CORRECTION_IMAGES
    return {
        "stem, from the last convolution on": (static_int8_exclusions(graph, ()), corrected, None),
        EXPORT_CHOICE: (blocks_01, corrected, None),
        "+ blocks 0-1, without bias correction": (blocks_01, 0, None),
        # every calibration photo when --calibration-count is 1,024 or fewer
        "+ blocks 0-1, bias correction on 1,024 photos": (blocks_01, 1024, None),
        "+ blocks 0-2": (static_int8_exclusions(graph, (0, 1, 2)), corrected, None),
        PERCENTILE_RANGES: (blocks_01, corrected, 99.999),
        HEAD_ROUNDED: (head_rounded(graph), corrected, None),
    }


def calibration_batches(net: OneNet, photos: list[Path]) -> list[np.ndarray]:
    """Calibration photos preprocessed in batches of 32, as `onenet export` feeds them to the quantiser."""
    return [net.processor(images=photos[i : i + 32])["pixel_values"].numpy() for i in range(0, len(photos), 32)]


def encoder(path: Path):
    """An onnxruntime session of one image-encoder file, with the library backend's session options."""
    session = onnxruntime.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])

    def encode(pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, pooled = session.run(None, {"pixel_values": pixels.numpy()})
        return torch.from_numpy(embeds), torch.from_numpy(pooled)

    return encode


EXPORT_CHOICE = "+ blocks 0-1 (the export's choice)"
PERCENTILE_RANGES = "+ blocks 0-1, percentile ranges (99.999%)"
HEAD_ROUNDED = "+ blocks 0-1, head rounded to 8 bits (until 2026-12-05)"


def per_photo(examples, captions: list[str], retrieval: tuple[torch.Tensor, torch.Tensor]) -> dict[str, np.ndarray]:
    """Each dev photo's share of the target table's figures but BLEU-4 (a corpus statistic with no per-photo
    share): its CIDEr, the share of its captions that find it in the top k (text->image) and whether its best
    caption is in its top k (image->text). With as many captions for every photo (five in Flickr8k), the mean of
    each is the corpus figure, so two encoders' per-photo values give a paired bootstrap of their gap."""
    text_ranks, image_ranks = retrieval_ranks(*retrieval)
    owners = retrieval[1]
    captions_per_photo = torch.bincount(owners, minlength=len(examples))
    if len(set(captions_per_photo.tolist())) != 1:
        raise ValueError("per-photo recall needs as many captions for every photo")
    outcomes = {"CIDEr": cider_per_image([e.captions for e in examples], captions)}
    for k in (1, 5, 10):
        found = torch.zeros(len(examples), dtype=torch.float64).index_add_(0, owners, (text_ranks < k).double())
        outcomes[f"text_to_image_R@{k}"] = (found / captions_per_photo).numpy()
        outcomes[f"image_to_text_R@{k}"] = (image_ranks < k).double().numpy()
    return outcomes


def paired_gap(reference: np.ndarray, values: np.ndarray, resamples: int = 10_000) -> dict:
    """A figure's gap to fp32 in points (x100: CIDEr points, recall percentage points) from per-photo values, with
    the paired bootstrap's standard error and 95% interval: how much of a gap the dev photos drawn make alone."""
    differences = 100 * (values - reference)
    draws = np.random.default_rng(0).integers(0, len(differences), size=(resamples, len(differences)))
    means = differences[draws].mean(axis=1)
    interval = [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]
    return {"points": float(differences.mean()), "bootstrap_se": float(means.std()), "bootstrap_95": interval}


def compared(net, examples, reference: dict, embeds: torch.Tensor, pooled: torch.Tensor) -> dict:
    captions = beam3_captions(net, embeds)
    unchanged = np.mean([a == b for a, b in zip(captions, reference["captions"], strict=True)])
    retrieval = dev_retrieval(net, pooled, examples)
    outcomes = per_photo(examples, captions, retrieval)
    return {
        "cosine_to_fp32": cosines(embeds, reference["embeds"]),
        "pooled_cosine_to_fp32": cosines(pooled, reference["pooled"]),
        "captions_unchanged_%": 100 * float(unchanged),
        **quality(net, embeds, pooled, examples, captions, retrieval),
        "gaps": {figure: paired_gap(reference["outcomes"][figure], values) for figure, values in outcomes.items()},
    }


def across_draws(rows: dict[str, dict], fp32: dict) -> dict:
    """Each figure's gap over the export's choice calibrated on different photos (mean, SD, smallest, largest):
    what the method loses, against what one int8 encoder happens to lose. BLEU-4's is its corpus figure's."""
    figures = next(iter(rows.values()))["gaps"]
    gaps = {figure: [row["gaps"][figure]["points"] for row in rows.values()] for figure in figures}
    gaps["BLEU-4"] = [100 * (row["BLEU-4"] - fp32["BLEU-4"]) for row in rows.values()]
    return {"draws": list(rows)} | {
        figure: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)), "min": min(v), "max": max(v)}
        for figure, v in gaps.items()
    }


def saved_again(path: str, quality: int = 95) -> Image.Image:
    """A photo as it reads after one more JPEG save at `quality`: a change no one calls an error."""
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def calibration_parser(description: str) -> argparse.ArgumentParser:
    """The options the int8 benches share: the checkpoint (with its ONNX export), the data, the calibration photos."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k", help="a checkpoint with its ONNX export")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--calibration-images", required=True, help="folder of calibration photos (train photos)")
    help_text = f"the folder's first N photos, as `onenet export` picks them (1 to {MAX_CALIBRATION_IMAGES:,})"
    parser.add_argument("--calibration-count", type=int, default=1024, help=help_text)
    return parser


def calibration_photos(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Path]:
    """The first --calibration-count photos of --calibration-images, the count checked before any work."""
    if not 1 <= args.calibration_count <= MAX_CALIBRATION_IMAGES:
        parser.error(f"--calibration-count must be 1 to {MAX_CALIBRATION_IMAGES:,}, got {args.calibration_count}")
    return list_images(args.calibration_images)[: args.calibration_count]


def fp32_image_encoder(model: str) -> Path:
    """The checkpoint's exported fp32 image encoder, which every int8 choice is quantised from."""
    manifest = json.loads((Path(model) / "onnx" / MANIFEST_FILE).read_text())
    return Path(model) / "onnx" / manifest["graphs"]["image_encoder"]["files"]["fp32"]["path"]


def main() -> None:
    parser = calibration_parser(__doc__)
    parser.add_argument("--images", type=int, default=500, help="dev photos timed (the first N)")
    parser.add_argument("--rows", nargs="*", help="only these choices (names as in `choices`); the controls always")
    parser.add_argument(
        "--draw-calibration", nargs="*", default=[], metavar="FOLDER",
        help="more folders of calibration photos (train photos, not the first folder's), each quantised with "
        "--draw-row's settings: how much the figures move from one int8 encoder to an equally made one (at most 8)",
    )  # fmt: skip
    parser.add_argument(
        "--draw-row", default=EXPORT_CHOICE, help="the row whose settings each --draw-calibration folder gets"
    )
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    calibration = calibration_photos(parser, args)
    net = OneNet.from_pretrained(args.model)
    net.model.eval()
    fp32_graph = fp32_image_encoder(args.model)
    rows = choices(fp32_graph)
    if args.draw_row not in rows:
        parser.error(f"unknown --draw-row {args.draw_row!r}; choose from {list(rows)}")
    if set(args.rows or ()) - set(rows):
        parser.error(f"unknown rows {sorted(set(args.rows) - set(rows))}; choose from {list(rows)}")
    if len(args.draw_calibration) > 8:
        parser.error(f"at most 8 --draw-calibration folders, got {len(args.draw_calibration)}")
    folders = [Path(f).resolve() for f in (args.calibration_images, *args.draw_calibration)]
    if len(set(folders)) < len(folders):
        parser.error("each --draw-calibration folder must differ from the others and from --calibration-images")
    examples = read_split(args.data_dir, "dev")
    pixel_values = net.processor(images=[e.path for e in examples])["pixel_values"]

    batches = calibration_batches(net, calibration)
    quantised = [(name, *row, None) for name, row in rows.items() if not args.rows or name in args.rows]
    quantised += [
        (f"{args.draw_row}, calibrated on {folder}", *rows[args.draw_row], folder) for folder in args.draw_calibration
    ]  # a draw's photos are read when it is quantised and let go after, so one draw's at most beside the first's
    fp32 = encoder(fp32_graph)
    embeds, pooled = image_side(fp32, pixel_values)
    reference = {"embeds": embeds, "pooled": pooled, "captions": beam3_captions(net, embeds)}
    reference["outcomes"] = per_photo(examples, reference["captions"], dev_retrieval(net, pooled, examples))
    results = {
        "cpu": cpu_model(),
        "calibration_images": sum(len(batch) for batch in batches),
        "timed_images": args.images,
        "fp32": {"images_per_s": timed(fp32, pixel_values[: args.images])[0]}
        | compared(net, examples, reference, embeds, pooled),
        "choices": {},
    }
    print(f"fp32: {json.dumps(results['fp32'])}", flush=True)
    with tempfile.TemporaryDirectory(prefix="onenet-int8-choices-") as folder:
        for name, fp32_nodes, bias_correction_images, percentile, draw in quantised:
            path = Path(folder) / "encoder.onnx"
            photos = batches if draw is None else calibration_batches(net, list_images(draw)[: args.calibration_count])
            start = time.perf_counter()
            quantize_static_int8(fp32_graph, path, photos, fp32_nodes, bias_correction_images, percentile)
            seconds = time.perf_counter() - start
            int8 = encoder(path)
            row = {
                "fp32_nodes": len(fp32_nodes),
                "calibration_images": sum(len(batch) for batch in photos),
                "bias_correction_images": bias_correction_images,
                "activation_percentile": percentile,
                "quantise_s": seconds,
                "images_per_s": timed(int8, pixel_values[: args.images])[0],
            }
            row |= compared(net, examples, reference, *image_side(int8, pixel_values))
            results["choices"][name] = row
            print(f"{name}: {json.dumps(row)}", flush=True)
            del photos
    draws = {name: row for name, row in results["choices"].items() if name.startswith(args.draw_row)}
    if len(draws) > 1:
        results["export_choice_across_draws"] = across_draws(draws, results["fp32"])
        print(f"across draws: {json.dumps(results['export_choice_across_draws'])}", flush=True)
    first = next(iter(results["choices"].values()))["cosine_to_fp32"]["mean"]  # the noise control's cosine
    noise = torch.randn(reference["embeds"].shape, generator=torch.Generator().manual_seed(0))
    scale = np.sqrt(1 / first**2 - 1)  # orthogonal noise of this relative norm leaves cosine `first`
    noisy = (
        reference["embeds"]
        + noise / noise.norm(dim=1, keepdim=True) * reference["embeds"].norm(dim=1, keepdim=True) * scale
    )
    results["noise_control"] = {"relative_norm": float(scale)} | compared(net, examples, reference, noisy, pooled)
    print(f"noise control: {json.dumps(results['noise_control'])}", flush=True)
    resaved = net.processor(images=[saved_again(e.path) for e in examples])["pixel_values"]
    results["jpeg_95_control"] = compared(net, examples, reference, *image_side(fp32, resaved))
    print(f"JPEG quality 95 control: {json.dumps(results['jpeg_95_control'])}", flush=True)
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
