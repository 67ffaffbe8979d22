"""`python -m export CHECKPOINT --out DIR`: write OneNet's ONNX graphs and manifest."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="OneNet checkpoint folder")
    parser.add_argument("--out", help="output folder (default: CHECKPOINT/onnx)")
    parser.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 (CPU) variant")
    parser.add_argument("--fp16", action="store_true", help="also write an fp16 (GPU) variant")


def run(args: argparse.Namespace) -> int:
    from . import export_onnx  # needs the onnx extra: a missing one is a one-line error

    manifest = export_onnx(args.checkpoint, args.out, int8=args.int8, fp16=args.fp16)
    print(json.dumps(manifest, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
