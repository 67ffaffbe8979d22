"""`python -m export CHECKPOINT --out DIR`: write OneNet's ONNX graphs and manifest."""

from __future__ import annotations

import argparse
import json
import sys

from . import CALIBRATION_IMAGES, MAX_CALIBRATION_IMAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="OneNet checkpoint folder")
    parser.add_argument("--out", help="output folder (default: CHECKPOINT/onnx)")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 (CPU) variant")
    parser.add_argument("--fp16", action="store_true", help="also write an fp16 (GPU) variant")
    help_text = "folder of photos to calibrate a static int8 image encoder on (the fast path of onenet index)"
    parser.add_argument("--calibration-images", help=help_text)
    help_text = f"photos used from that folder (1 to {MAX_CALIBRATION_IMAGES:,})"
    parser.add_argument("--calibration-count", type=int, default=CALIBRATION_IMAGES, help=help_text)


def run(args: argparse.Namespace) -> int:
    from onenet_hf.errors import OneNetError
    from onenet_hf.indexing import list_images

    from . import export_onnx  # needs the onnx extra: a missing one is a one-line error

    photos = []
    if args.calibration_images:
        if not 1 <= args.calibration_count <= MAX_CALIBRATION_IMAGES:
            count = args.calibration_count
            raise OneNetError(f"--calibration-count must be 1 to {MAX_CALIBRATION_IMAGES:,}, got {count}")
        photos = list_images(args.calibration_images)[: args.calibration_count]
        if not photos:
            raise OneNetError(f"no images in {args.calibration_images}")
    manifest = export_onnx(args.checkpoint, args.out, int8=args.int8, fp16=args.fp16, calibration_images=photos)
    print(json.dumps(manifest, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
