"""Which share of each activation's calibration values its static int8 range keeps, chosen on held-out train photos.

For each setting (min/max, or a percentile), the export's choice is quantised by `quantize_static_int8` on the same
calibration photos, with the export's fp32 nodes and bias correction, and compared with the onnxruntime fp32 encoder
on train photos that neither calibrate nor get evaluated on dev: the cosine (mean, 1st percentile, min) of the
representation and of the pooled features (which the `retrieval` method reads). Dev figures for the chosen setting
come from bench/quality/static_int8_choices.py, so the choice is never made on dev.
Run (16.5 minutes on 2 cores for the four default settings, most of it quantising; nothing else heavy at the same time):
python -m bench.quality.activation_percentile --calibration-images /tmp/calibration \
  --output bench/results/activation_percentile/activation_percentile_1.json
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from bench.common import cpu_model, write_result
from bench.quality.static_int8_choices import (
    calibration_batches,
    calibration_parser,
    calibration_photos,
    encoder,
    fp32_image_encoder,
)
from bench.speed.embed_speed import cosines, image_side
from onenet_hf import OneNet
from onenet_hf.onnx.export import BIAS_CORRECTION_IMAGES, quantize_static_int8, static_int8_exclusions

MAX_SETTINGS = 6
MAX_HELD_OUT = 2_000


def main() -> None:
    parser = calibration_parser(__doc__)
    parser.add_argument(
        "--held-out", type=int, nargs=2, default=(5096, 6000), metavar=("START", "STOP"),
        help="compare on these train photos (positions in Flickr_8k.trainImages.txt), none of them calibration photos",
    )  # fmt: skip
    parser.add_argument(
        "--percentiles", nargs="+", default=["min/max", "99.9999", "99.999", "99.99"],
        help=f"settings to compare: min/max or a percentile in (50, 100) (at most {MAX_SETTINGS})",
    )  # fmt: skip
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    if len(args.percentiles) > MAX_SETTINGS:
        parser.error(f"at most {MAX_SETTINGS} --percentiles, got {len(args.percentiles)}")
    try:
        settings = {p: None if p == "min/max" else float(p) for p in args.percentiles}
    except ValueError:
        parser.error(f"--percentiles takes min/max or numbers, got {args.percentiles}")
    if len(settings) < len(args.percentiles):
        parser.error(f"each setting once, got {args.percentiles}")
    if any(p is not None and not 50 < p < 100 for p in settings.values()):
        parser.error(f"each percentile must lie between 50 and 100, got {args.percentiles}")
    calibration = calibration_photos(parser, args)
    train = (Path(args.data_dir) / "Flickr_8k.trainImages.txt").read_text().split()
    start, stop = args.held_out
    if not 0 <= start < stop <= len(train) or stop - start > MAX_HELD_OUT:
        parser.error(
            f"--held-out needs 0 <= START < STOP <= {len(train):,} (the train list) and at most {MAX_HELD_OUT:,} "
            f"photos, got {start} {stop}"
        )
    names = train[start:stop]
    if overlap := {p.name for p in calibration} & set(names):
        parser.error(f"{len(overlap)} held-out photos are calibration photos too (e.g. {sorted(overlap)[0]})")

    net = OneNet.from_pretrained(args.model)
    fp32_graph = fp32_image_encoder(args.model)
    batches = calibration_batches(net, calibration)
    pixel_values = net.processor(images=[Path(args.data_dir) / "images" / name for name in names])["pixel_values"]
    embeds, pooled = image_side(encoder(fp32_graph), pixel_values)
    results = {
        "cpu": cpu_model(),
        "calibration_images": len(calibration),
        "held_out": {"first": start, "stop": stop, "photos": len(names)},
        "settings": {},
    }
    with tempfile.TemporaryDirectory(prefix="onenet-int8-percentile-") as folder:
        for name, percentile in settings.items():
            path = Path(folder) / "encoder.onnx"
            began = time.perf_counter()
            quantize_static_int8(
                fp32_graph, path, batches, static_int8_exclusions(fp32_graph), BIAS_CORRECTION_IMAGES, percentile
            )
            quantised_embeds, quantised_pooled = image_side(encoder(path), pixel_values)
            row = {
                "activation_percentile": percentile,
                "quantise_s": time.perf_counter() - began,
                "cosine_to_fp32": cosines(quantised_embeds, embeds),
                "pooled_cosine_to_fp32": cosines(quantised_pooled, pooled),
            }
            results["settings"][name] = row
            print(f"{name}: {json.dumps(row)}", flush=True)
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
