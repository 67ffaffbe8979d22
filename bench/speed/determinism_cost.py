"""What `onenet train --full-determinism` costs: the same small run timed with and without it, alternating.

Each repeat trains the same arguments twice through the library's `train`, once with `full_determinism` and once
without (which one goes first alternates), on a feature cache filled beforehand, so each time is epochs of
training plus the dev evaluations after them. Prints the median wall time of each, their ratio, and whether the
runs (every repeat, with and without it) all gave bit-identical weights. Meant for a small set (the tests'
synthetic shapes set, or a few hundred images) or one epoch of the full recipe, on the machine whose cost is
wanted (`--device cuda` on a GPU). Run from the repository root:

python -m bench.speed.determinism_cost --data-dir /tmp/shapes --epochs 3
python -m bench.speed.determinism_cost --data-dir ../shared/datasets/flickr8k --default-model --epochs 1 --repeats 2 \
    --cache-dir ~/.cache/onenet/features   # full size: Flickr8k, the default model, a feature cache already filled
With --cache-dir no warm-up run is trained (it only fills a fresh cache), so the first timed run also pays for
reading the cache from disk: use --repeats 2 or more when the time ratio matters.
(/tmp/shapes from: python -c "from pathlib import Path; from tests.conftest import write_shapes_dataset;
write_shapes_dataset(Path('/tmp/shapes'), {'train': 4, 'dev': 1})")
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.common import write_result
from onenet_hf.training.captions import STATE_FILE, CaptionTrainingArguments, train

SMALL = dict(  # the tests' small model (tests/conftest.py)
    batch_size=16,
    learning_rate=1e-2,
    warmup_steps=10,
    min_word_frequency=1,
    hidden_size=64,
    word_embedding_size=32,
    decoder_hidden_size=64,
    dropout=0.1,
    label_smoothing=0.0,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    parser.add_argument("--default-model", action="store_true", help="the default model size, not the tests' small one")
    parser.add_argument("--cache-dir", help="a feature cache to use (default: a fresh one, removed at the end)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="determinism-cost-"))
    size = {} if args.default_model else SMALL
    base = CaptionTrainingArguments(
        args.data_dir,
        str(work / "run"),
        cache_dir=args.cache_dir or str(work / "cache"),
        epochs=args.epochs,
        device=args.device,
        **size,
    )
    if not args.cache_dir:  # one epoch fills the fresh feature cache; a given cache is already filled
        train(replace(base, epochs=1, output_dir=str(work / "warm-up")))
    times: dict[bool, list[float]] = {False: [], True: []}
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for strict in (False, True) if repeat % 2 == 0 else (True, False):
            folder = work / f"run-{repeat}-{strict}"
            start = time.perf_counter()
            train(replace(base, output_dir=str(folder), full_determinism=strict))
            times[strict].append(time.perf_counter() - start)
            runs.append(torch.load(folder / STATE_FILE, weights_only=False)["model"])
            shutil.rmtree(folder)
    identical = all(torch.equal(runs[0][k], other[k]) for other in runs[1:] for k in runs[0])
    default, strict = statistics.median(times[False]), statistics.median(times[True])
    result = {
        "device": str(args.device or ("cuda" if torch.cuda.is_available() else "cpu")),
        "threads": torch.get_num_threads(),
        "epochs": args.epochs,
        "repeats": args.repeats,
        "seconds_default": times[False],
        "seconds_full_determinism": times[True],
        "median_ratio": strict / default,
        "identical_weights": identical,
    }
    print(
        f"median {default:.2f} s default, {strict:.2f} s with full_determinism: ratio {strict / default:.3f}; "
        f"weights of all {len(runs)} runs {'identical' if identical else 'DIFFERENT'} "
        f"({result['device']}, {result['threads']} threads)"
    )
    if args.output:
        write_result(result, Path(args.output))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
