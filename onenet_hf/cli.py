"""The `onenet` command line: train, evaluate, caption. Each command calls the library's functions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "onenet-flickr8k"


def _add_training_arguments(parser: argparse.ArgumentParser) -> None:
    from .training import TrainingArguments

    for field in dataclasses.fields(TrainingArguments):
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        help_text = None if required else f"(default: {default})"
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        kind = {"int": int, "float": float}.get(str(field.type), str)
        parser.add_argument(flag, type=kind, default=default, required=required, dest=field.name, help=help_text)


def _train(args: argparse.Namespace) -> int:
    from .training import TrainingArguments, train

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    output = train(TrainingArguments(**{k: v for k, v in vars(args).items() if k in fields}))
    print(f"best model written to {output}")
    return 0


def _load(args: argparse.Namespace):
    from .pipeline import OneNet

    return OneNet.from_pretrained(args.model, args.device, args.backend, args.onnx_dir, args.onnx_variant)


def _evaluate(args: argparse.Namespace) -> int:
    from .data import read_split
    from .evaluation import CAPTION_METRICS, caption_metrics, evaluate_on_features, format_table
    from .features import cached_backbone_features

    net = _load(args)
    examples = read_split(args.data_dir, args.split, args.data_format)
    if args.backend == "torch":  # cached backbone features make repeated evaluations cheap
        paths = [e.path for e in examples]
        features = cached_backbone_features(net.model, net.processor.image_processor, paths, args.cache_dir)
        scores, texts = evaluate_on_features(
            net.model, net.processor, features, examples, args.beam_size, args.length_penalty, metrics=CAPTION_METRICS
        )
    else:
        captions = net.caption([e.path for e in examples], args.beam_size, args.length_penalty)
        texts = [c.text for c in captions]
        scores = caption_metrics([e.captions for e in examples], texts)
    result = {
        "model": str(args.model),
        "split": args.split,
        "images": len(examples),
        "backend": args.backend + (f"-{args.onnx_variant}" if args.backend == "onnx" else ""),
        "beam_size": args.beam_size,
        "length_penalty": args.length_penalty,
        "metrics": scores,
    }
    print(format_table(scores))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    if args.captions_output:
        lines = [f"{e.path.name}\t{t}" for e, t in zip(examples, texts, strict=True)]
        Path(args.captions_output).write_text("\n".join(lines) + "\n")
    return 0


def _caption(args: argparse.Namespace) -> int:
    from .image_processing_onenet import ImageLoadError, load_image
    from .samples import sample_photos

    paths = list(args.images) + ([str(p) for p in sample_photos()] if args.samples else [])
    if not paths:
        print("onenet caption: give image paths, or --samples", file=sys.stderr)
        return 2
    net = _load(args)
    failed = 0
    for path in paths:
        try:
            caption = net.caption(load_image(path), args.beam_size, args.length_penalty)[0]
        except ImageLoadError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}\t{caption.text}", flush=True)
    return 1 if failed else 0


def _export(args: argparse.Namespace) -> int:
    from export.__main__ import run

    return run(args)


def _release(args: argparse.Namespace) -> int:
    from .pipeline import OneNet

    OneNet.from_pretrained(args.run_dir).save_pretrained(args.out, half_precision_weights=args.fp16_weights)
    print(f"released {args.run_dir} to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onenet", description="One network, many uses.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train OneNet on a captioned-image dataset")
    _add_training_arguments(train)
    train.set_defaults(run=_train)

    def model_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--model", default=str(DEFAULT_CHECKPOINT), help="checkpoint folder")
        sub.add_argument("--device", default=None, help="cpu or cuda (default: cpu)")
        sub.add_argument("--backend", default="torch", choices=["torch", "onnx"])
        sub.add_argument("--onnx-dir", default=None, help="exported graphs (default: MODEL/onnx)")
        sub.add_argument("--onnx-variant", default="fp32", choices=["fp32", "int8", "fp16"])
        sub.add_argument("--beam-size", type=int, default=3)
        sub.add_argument("--length-penalty", type=float, default=1.0, help="score = log p / length ** this")

    evaluate = commands.add_parser("evaluate", help="caption metrics (BLEU, METEOR, ROUGE-L, CIDEr) on a split")
    model_options(evaluate)
    evaluate.add_argument("--data-dir", required=True)
    evaluate.add_argument("--data-format", default="flickr8k", choices=["flickr8k", "coco"])
    evaluate.add_argument("--split", default="dev")
    evaluate.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "onenet" / "features"))
    evaluate.add_argument("--output", help="write the results as JSON here")
    evaluate.add_argument("--captions-output", help="write IMAGE<TAB>caption lines here")
    evaluate.set_defaults(run=_evaluate)

    caption = commands.add_parser("caption", help="print PATH<TAB>caption for each image")
    model_options(caption)
    caption.add_argument("images", nargs="*")
    caption.add_argument("--samples", action="store_true", help="also caption scikit-image's sample photos")
    caption.set_defaults(run=_caption)
    export = commands.add_parser("export", help="export ONNX graphs (same as python -m export)")
    from export.__main__ import add_arguments as add_export_arguments

    add_export_arguments(export)
    export.set_defaults(run=_export)

    release = commands.add_parser("release", help="copy a trained model's HF files (no training state) to a folder")
    release.add_argument("run_dir", help="output folder of `onenet train`")
    release.add_argument("--out", required=True)
    release.add_argument("--fp16-weights", action="store_true", help="store weights in fp16 (computed in fp32)")
    release.set_defaults(run=_release)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
