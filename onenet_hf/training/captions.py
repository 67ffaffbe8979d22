"""Training on cached backbone features: seeded, checkpointed every epoch, resumable, best epoch by dev CIDEr.

Reproducible: on one machine the same arguments give bit-identical weights, whether the feature cache was empty
or full and whether the run was interrupted and resumed. Every random stream of an epoch (caption order, image
view, dropout) is seeded from (seed, epoch) alone, so nothing that runs before the epoch (feature caching,
evaluation, a resume) can shift it; see `epoch_seed`. "One machine" means one device and one thread count:
another thread count changes the last bits of CPU sums (in the cached features and in training), and those
differences grow over epochs. A GPU may need `full_determinism` on top (not measured: no GPU was at hand).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, asdict, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..configuration_onenet import OneNetConfig
from ..data.datasets import CaptionedImage, read_split
from ..data.feature_cache import shared_backbone_features
from ..errors import OneNetError
from ..evaluation import evaluate_on_features
from ..image_processing_onenet import OneNetImageProcessor
from ..modeling_onenet import OneNetModel
from ..processing_onenet import OneNetProcessor
from ..tokenization_onenet import build_tokenizer
from ..utils.atomic_files import write_json
from ..utils.distributed import Processes
from ..utils.messages import shorten
from .arguments import CaptionTrainingArguments, check_training_numbers

STATE_FILE = "training_state.pt"
LOG_FILE = "training_log.json"
ORDER_STREAM, VIEW_STREAM, DROPOUT_STREAM = 0, 1, 2  # the random streams of an epoch, see `epoch_seed`


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (torch's seeds every CUDA device too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, stream: int, process: int = 0) -> int:
    """A 64-bit seed for one random stream (`ORDER_STREAM`, `VIEW_STREAM`, `DROPOUT_STREAM`) of one epoch, and
    of one process of a distributed run (`process`; the main process's, 0, is a lone run's).

    Why per epoch: the global torch generator, which dropout draws from, used to carry over from model
    initialisation through feature caching into training, so anything that drew from it in between changed
    every dropout mask. A cold feature cache did: its `DataLoader` drew its workers' base seed from the global
    generator, a warm one never built a loader, so a run from an empty cache and one from a full cache parted
    from the first step. Seeding each epoch's streams from (seed, epoch) alone also makes a resumed run equal an
    uninterrupted one without saving generator states (CPU or CUDA).

    Why `SeedSequence`: the streams of different seeds and epochs are independent. With `seed + epoch`, seed 1
    would shuffle its epochs as seed 0 shuffles its epochs 2, 3, ..., which could make a spread over seeds
    look smaller than it is.
    """
    entropy = [seed, epoch, stream, process] if process else [seed, epoch, stream]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])


@contextmanager
def full_determinism(enabled: bool = True) -> Iterator[None]:
    """Within the block: `torch.use_deterministic_algorithms(True)`, deterministic cuDNN without benchmarking, and
    `CUBLAS_WORKSPACE_CONFIG=:4096:8` (what transformers' `enable_full_determinism` sets, less its
    `CUDA_LAUNCH_BLOCKING`); the previous settings come back afterwards.

    Not needed on a CPU: there two runs give identical weights without it (tests/test_training.py). It is for
    CUDA, where some kernels (cuBLAS with several workspaces, cuDNN's RNN and convolution algorithms) may add in
    a different order from run to run; an operation with no deterministic implementation then raises. The
    cuBLAS setting only takes effect if this process has not used cuBLAS yet."""
    if not enabled:
        yield
        return
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]
        if saved[4] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[4]


def save_atomically(obj: object, path: Path) -> None:
    """`torch.save` to a temporary file beside `path`, then a rename: a killed run leaves the previous state."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _caption_batches(
    tokenizer, examples: list[CaptionedImage], max_length: int
) -> tuple[torch.Tensor, list[list[int]]]:
    """Image index of every (image, caption) pair and its token ids [BOS] w1..wn [EOS], truncated."""
    owners, texts = [], []
    for index, example in enumerate(examples):
        owners += [index] * len(example.captions)
        texts += list(example.captions)
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    ids = [seq[: max_length + 1] + [seq[-1]] if len(seq) > max_length + 2 else seq for seq in ids]
    return torch.tensor(owners), ids


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    return torch.tensor([s + [value] * (width - len(s)) for s in sequences])


def train(args: CaptionTrainingArguments) -> Path:
    """Train OneNet and write the best epoch (by dev CIDEr) as a Hugging Face folder in `args.output_dir`.

    Re-running with the same arguments resumes after the last finished epoch (`training_state.pt`); the result
    is bit-identical to an uninterrupted run's. With `args.full_determinism` the run is wrapped in
    `full_determinism()`."""
    check_training_numbers(args)  # again: a field may have been set after `args` was made and checked
    with full_determinism(args.full_determinism):
        return _train(args)


def _recorded_arguments(state: dict, args: CaptionTrainingArguments) -> dict:
    """The arguments a training state was written with; fields added since then count as their defaults."""
    defaults = {f.name: f.default for f in fields(CaptionTrainingArguments) if f.default is not MISSING}
    return {**defaults, **state["arguments"], "device": args.device}


def _train(args: CaptionTrainingArguments) -> Path:
    processes = Processes()  # alone, or one of several under `accelerate launch`
    processes.check_batch_size(args.batch_size, "--batch-size")
    if processes.device is not None and args.device is not None:
        raise OneNetError(
            f"--device {args.device} cannot be used with several processes: Accelerate gives each process its device "
            "(accelerate config, or accelerate launch --cpu); leave --device out"
        )
    device = processes.device or torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    train_examples = read_split(args.data_dir, args.train_split, args.data_format)
    dev_examples = read_split(args.data_dir, args.dev_split, args.data_format)
    tokenizer = build_tokenizer((c for e in train_examples for c in e.captions), args.min_word_frequency)
    if len(tokenizer) == len(tokenizer.all_special_tokens):
        raise OneNetError(
            f"--min-word-frequency {args.min_word_frequency}: no word of the {shorten(args.train_split)} captions "
            "occurs that often, so the vocabulary would be empty; give a lower value"
        )
    output_dir = Path(args.output_dir)  # made once the data has been read: a bad --data-dir leaves nothing behind
    output_dir.mkdir(parents=True, exist_ok=True)

    config = OneNetConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        word_embedding_size=args.word_embedding_size,
        decoder_hidden_size=args.decoder_hidden_size,
        image_pooling=args.image_pooling,
        dropout=args.dropout,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    seed_everything(args.seed)  # the initial weights; training's own streams are seeded per epoch
    model = OneNetModel(config).to(device)
    image_processor = OneNetImageProcessor(size={"height": config.image_size, "width": config.image_size})
    processor = OneNetProcessor(image_processor=image_processor, tokenizer=tokenizer)

    train_paths = [e.path for e in train_examples]
    views = [False, True] if args.horizontal_flip else [False]
    train_features = torch.stack(
        [
            torch.from_numpy(
                np.array(
                    shared_backbone_features(
                        model, processor.image_processor, train_paths, args.cache_dir, processes, horizontal_flip=flip
                    )
                )
            )
            for flip in views
        ]
    )  # (views, N, C, H, W): each caption is paired with a random view of its image
    dev_features = shared_backbone_features(
        model, processor.image_processor, [e.path for e in dev_examples], args.cache_dir, processes
    )
    owners, caption_ids = _caption_batches(tokenizer, train_examples, config.max_caption_length)

    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(caption_ids) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs

    def schedule(step: int) -> float:
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = (step - args.warmup_steps) / max(1, total_steps - args.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start_epoch, best, history = 0, float("-inf"), []
    setup = {"device": str(device), "threads": torch.get_num_threads()}
    if processes.count > 1:
        setup["processes"] = processes.count
    state_path = output_dir / STATE_FILE
    shared = f"{state_path} (--output-dir must be one folder every process sees)"
    if processes.agree(state_path.exists(), shared):
        state = torch.load(state_path, map_location="cpu", weights_only=False)  # loading copies to the device
        if _recorded_arguments(state, args) != asdict(args):
            raise OneNetError(f"{state_path} was written with other training arguments; use a new --output-dir")
        model.load_state_dict(state["model"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])  # no generator state: each epoch seeds its own
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        if processes.is_main:
            tqdm.write(f"resuming after epoch {state['epoch'] + 1} (best dev CIDEr so far {best:.4f})")
        if state.get("setup", setup) != setup and processes.is_main:
            tqdm.write(
                f"warning: the epochs so far ran on {state['setup']}, this process runs on {setup}; the weights will "
                "not be bit-identical to an uninterrupted run's (the last bits of sums depend on these)"
            )

    trained = processes.wrap(model)  # DistributedDataParallel under `accelerate launch`; `model` when alone
    for epoch in range(start_epoch, args.epochs):
        trained.train()
        order_generator = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, ORDER_STREAM))
        order = torch.randperm(len(caption_ids), generator=order_generator)
        view_generator = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, VIEW_STREAM))
        # dropout draws from the global generator; each process of a run masks its own slice of the batch
        torch.manual_seed(epoch_seed(args.seed, epoch, DROPOUT_STREAM, processes.index))
        total_loss, trained_captions = 0.0, 0
        starts = range(0, len(order), args.batch_size)
        bar = tqdm(starts, desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", disable=not processes.is_main)
        for start in bar:
            view = torch.randint(len(views), (len(order[start : start + args.batch_size]),), generator=view_generator)
            if len(view) < processes.count:
                continue  # a last batch too small to give every process a caption: skipped by all of them
            batch, view = processes.share(order[start : start + args.batch_size]), processes.share(view)
            sequences = [caption_ids[i] for i in batch.tolist()]
            padded = _pad(sequences, -100)
            input_ids = padded[:, :-1].clamp(min=0).to(device)  # -100 padding becomes [PAD] (id 0)
            labels = padded[:, 1:].to(device)
            grid = train_features[view, owners[batch]].to(device)
            loss = trained(
                input_ids=input_ids,
                labels=labels,
                backbone_features=grid,
                label_smoothing=args.label_smoothing,
            ).loss
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss.item()
            if processes.count > 1:  # DDP averages the processes' means; weighted so, they give the batch's mean
                tokens = float((labels != -100).sum())
                all_tokens, all_loss = processes.sum([tokens, batch_loss * tokens])
                batch_loss = all_loss / all_tokens
                loss = loss * tokens * processes.count / all_tokens
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, args.gradient_clip)
            optimizer.step()
            scheduler.step()
            total_loss += batch_loss * len(batch) * processes.count  # the global batch's
            trained_captions += len(batch) * processes.count
            bar.set_postfix(loss=f"{batch_loss:.3f}")
        # the main process evaluates and writes while the others wait; an error there stops them too
        with processes.shared_outcome(f"evaluating and saving epoch {epoch + 1}"):
            if processes.is_main:
                scores, _ = evaluate_on_features(model, processor, dev_features, dev_examples, args.eval_beam_size)
                history.append({"epoch": epoch + 1, "train_loss": total_loss / max(1, trained_captions), **scores})
                tqdm.write(json.dumps(history[-1]))
                if scores["CIDEr"] > best:
                    best = scores["CIDEr"]
                    model.save_pretrained(output_dir)
                    processor.save_pretrained(output_dir)
                trainable = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
                save_atomically(
                    {
                        "arguments": asdict(args),
                        "epoch": epoch,
                        "best": best,
                        "history": history,
                        "model": trainable,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "setup": setup,
                    },
                    state_path,
                )
                write_json(history, output_dir / LOG_FILE)
    return output_dir


__all__ = [
    "CaptionTrainingArguments",
    "check_training_numbers",
    "epoch_seed",
    "full_determinism",
    "save_atomically",
    "seed_everything",
    "train",
]
