"""The spread over seeds of one training recipe: dev BLEU-4 and CIDEr per seed, with their mean, min and max.

Each seed is one run of the library's `train` (what `onenet train` runs; every `onenet train` option but
--seed is accepted and passed on) into OUTPUT_DIR/seed-N, then scored on the dev split by the library's
`evaluate` (what `onenet evaluate --beam-size B` runs) into OUTPUT_DIR/seed-N/eval_dev.json. Re-running
resumes: a seed with its evaluation written is not trained again, an interrupted seed resumes after its last
finished epoch. OUTPUT_DIR/seeds.json and OUTPUT_DIR/seeds.md (a Markdown table) are rewritten after each seed.
At most MAX_SEEDS seeds per call. The default recipe on Flickr8k, as the model card quotes it (run from the
repository root):

python -m bench.training.train_seeds --seeds 0,1,2 --data-dir ../shared/datasets/flickr8k \
    --output-dir runs/seeds --cache-dir /tmp/scratch-cache
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, fields
from pathlib import Path

from bench.common import write_result
from onenet_hf import OneNet
from onenet_hf.cli import add_dataclass_arguments, dataclass_from
from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import evaluate
from onenet_hf.training.captions import LOG_FILE, CaptionTrainingArguments, train
from onenet_hf.utils.atomic_files import write_json

MAX_SEEDS = 10  # a full-size Flickr8k seed takes about 35 minutes on a 2-core CPU
SUMMARY_FIGURES = ("BLEU-4", "CIDEr")


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]: distinct seeds, 0 or more, at most MAX_SEEDS of them."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise OneNetError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise OneNetError(f"--seeds {text!r}: give distinct seeds, 0 or more, e.g. 0,1,2")
    if len(seeds) > MAX_SEEDS:
        raise OneNetError(
            f"--seeds: {len(seeds)} seeds, at most {MAX_SEEDS} per call; run the rest into the same --output-dir"
        )
    return seeds


def seed_result(recipe: CaptionTrainingArguments, seed: int, output_dir: Path, beam_size: int) -> dict:
    """Train and evaluate one seed, or read its evaluation if a previous call wrote it for the same recipe."""
    arguments = CaptionTrainingArguments(
        **{**asdict(recipe), "seed": seed, "output_dir": str(output_dir / f"seed-{seed}")}
    )
    folder = Path(arguments.output_dir)
    record_file = folder / f"eval_{arguments.dev_split}.json"
    recorded = {k: v for k, v in asdict(arguments).items() if k != "device"}
    if record_file.exists():
        record = json.loads(record_file.read_text())
        if record["training_arguments"] != recorded or record["beam_size"] != beam_size:
            raise OneNetError(f"{record_file} was written with other arguments; use a new --output-dir")
        print(f"seed {seed}: done before, read from {record_file}", flush=True)
        return record
    train(arguments)
    history = json.loads((folder / LOG_FILE).read_text())
    best = max(history, key=lambda row: row["CIDEr"])  # the epoch `train` kept (the first of equals)
    net = OneNet.from_pretrained(folder, arguments.device)
    data = {"data_dir": arguments.data_dir, "split": arguments.dev_split, "data_format": arguments.data_format}
    result = evaluate(net, "captions", **data, cache_dir=arguments.cache_dir, beam_size=beam_size)
    result.pop("captions")
    record = {
        "seed": seed,
        "best_epoch": best["epoch"],
        "best_epoch_greedy_CIDEr": best["CIDEr"],
        "beam_size": beam_size,
        "metrics": result["metrics"],
        "training_arguments": recorded,
    }
    write_json(record, record_file)  # read back by a rerun: no "run" of its own
    return record


def summarize(records: list[dict]) -> dict:
    """Mean, min, max (and the sample standard deviation, with 2 seeds or more) of each summary figure."""
    summary = {}
    for name in SUMMARY_FIGURES:
        values = [record["metrics"][name] for record in records]
        summary[name] = {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}
        summary[name]["sd"] = statistics.stdev(values) if len(values) > 1 else None
    return summary


def recipe_options(recipe: CaptionTrainingArguments) -> str:
    """The `onenet train` options of the recipe that differ from the defaults (where the data is aside)."""
    aside = ("data_dir", "output_dir", "cache_dir", "device", "seed")
    changed = [f for f in fields(recipe) if f.name not in aside and getattr(recipe, f.name) != f.default]
    return " ".join(f"--{f.name.replace('_', '-')} {getattr(recipe, f.name)}" for f in changed) or "the defaults"


def markdown_table(records: list[dict], summary: dict, beam_size: int, recipe: CaptionTrainingArguments) -> str:
    head = ["seed", "best epoch", "its greedy dev CIDEr"] + [f"dev {n} (beam {beam_size})" for n in SUMMARY_FIGURES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in records:
        figures = [f"{r['metrics'][n]:.4f}" for n in SUMMARY_FIGURES]
        lines.append(
            f"| {r['seed']} | {r['best_epoch']} | {r['best_epoch_greedy_CIDEr']:.4f} | " + " | ".join(figures) + " |"
        )
    for row in ("mean", "min", "max", "sd"):
        cells = ["" if summary[n][row] is None else f"{summary[n][row]:.4f}" for n in SUMMARY_FIGURES]
        lines.append(f"| **{row}** | | | " + " | ".join(cells) + " |")
    notes = (
        f"{len(records)} seeds of `onenet train` with {recipe_options(recipe)}; sd is the sample standard deviation."
    )
    return "\n".join(lines) + f"\n\n{notes}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", required=True, help=f"comma-separated seeds, e.g. 0,1,2 (at most {MAX_SEEDS})")
    parser.add_argument("--beam-size", type=int, default=3, help="dev evaluation's beam (default: %(default)s)")
    add_dataclass_arguments(parser, CaptionTrainingArguments, exclude=("seed",))
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        recipe = dataclass_from(CaptionTrainingArguments, args)
        output_dir = Path(recipe.output_dir)
        records = []
        for seed in seeds:
            records.append(seed_result(recipe, seed, output_dir, args.beam_size))
            summary = summarize(records)
            write_result({"seeds": records, "summary": summary}, output_dir / "seeds.json")
            (output_dir / "seeds.md").write_text(markdown_table(records, summary, args.beam_size, recipe))
    except OneNetError as error:
        print(f"train_seeds: error: {error}", file=sys.stderr)
        return 2
    print((output_dir / "seeds.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
