"""Second training stage: the tag head and the retrieval head, on top of the frozen caption network.

The caption network (backbone, image representation, decoder) is not changed, so the caption quality of
the checkpoint stays exactly what it was; the heads learn from its image representation and features.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage, read_split
from ..data.feature_cache import shared_backbone_features
from ..errors import OneNetError
from ..evaluation import image_inputs_from_features, retrieval_metrics, tag_precision
from ..hub import resolve_model
from ..language.text_encoder import cached_sentence_embeddings
from ..language.word_vectors import content_words, normalize_word
from ..modeling_onenet import OneNetModel
from ..processing_onenet import OneNetProcessor
from ..uses.tag import Tagger, tag_vocabulary, tag_word_features
from ..utils.atomic_files import write_json
from ..utils.distributed import Processes
from .arguments import HEADS, HeadTrainingArguments
from .captions import DROPOUT_STREAM, LOG_FILE, check_training_numbers, epoch_seed, seed_everything

HEADS_STATE_FILE = "heads_state.pt"
HEADS_LOG_FILE = "heads_training_log.json"
OLD_HEAD_NAMES = {"text-image": "retrieval"}  # logs written before version 0.2


def _tag_targets(examples: list[CaptionedImage], words: list[str]) -> torch.Tensor:
    """(images, words): how many of an image's captions use each tag word (compared by stem)."""
    column = {normalize_word(word): i for i, word in enumerate(words)}
    targets = torch.zeros(len(examples), len(words))
    for row, example in enumerate(examples):
        stems = Counter(normalize_word(w) for caption in example.captions for w in set(content_words(caption)))
        for stem, count in stems.items():
            if stem in column:
                targets[row, column[stem]] = count
    return targets


class _HeadObjective(torch.nn.Module):
    """A head and its batch loss as one module: under several processes DistributedDataParallel wraps it, and
    calling it (its forward) is what makes DDP average the head's gradients."""

    def __init__(self, head: torch.nn.Module, batch_loss):
        super().__init__()
        self.head, self.batch_loss = head, batch_loss

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        """The loss of this process's share `batch` (indices of training examples)."""
        return self.batch_loss(batch)


def _train_keeping_best(
    head: torch.nn.Module,
    name: str,
    examples: int,
    batch_size: int,
    epochs: int,
    args: HeadTrainingArguments,
    batch_loss,
    evaluate,
    processes: Processes,
) -> list[dict]:
    """Epochs of shuffled mini-batches (`batch_loss(indices)`, each process given its share of the batch);
    after each, `evaluate()` gives the dev figures and the score that picks the epoch whose weights are kept.
    Returns one log row per epoch."""
    total_steps = math.ceil(examples / batch_size) * epochs
    optimizer = torch.optim.AdamW(head.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.learning_rate, total_steps=total_steps, pct_start=0.1
    )
    history, best, best_state = [], -math.inf, None
    objective = processes.wrap(_HeadObjective(head, batch_loss))
    for epoch in range(epochs):
        head.train()
        order = torch.randperm(examples)  # the same in every process: seeded alike
        starts = range(0, examples, batch_size)
        # several processes: each draws its own dropout masks, and the global generator (the next epoch's order)
        # comes back as it was, so they still agree on the order
        with torch.random.fork_rng(devices=[], enabled=processes.count > 1):
            if processes.count > 1:
                torch.manual_seed(epoch_seed(args.seed, epoch, DROPOUT_STREAM, processes.index))
            for start in tqdm(starts, desc=f"{name} head {epoch + 1}", unit="batch", disable=not processes.is_main):
                share = processes.share(order[start : start + batch_size])
                if not len(share):
                    continue  # a last batch smaller than the number of processes
                loss = objective(share)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
        head.eval()
        figures, score = evaluate()
        history.append({"head": name, "epoch": epoch + 1, **figures})
        if processes.is_main:
            tqdm.write(json.dumps(history[-1]))
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(best_state)
    return history


def train_tag_head(
    model: OneNetModel,
    tokenizer,
    train_images: torch.Tensor,
    train_examples: list[CaptionedImage],
    dev_images: torch.Tensor,
    dev_examples: list[CaptionedImage],
    args: HeadTrainingArguments,
    processes: Processes,
) -> list[dict]:
    """Listwise softmax over the whole tag vocabulary, target = the image's caption words; the epoch with the best
    dev P@5 of the head alone (no sampled captions) is kept."""
    words = list(tag_vocabulary(model.config.tag_vocabulary_size))
    features, targets = tag_word_features(model, tokenizer, words), _tag_targets(train_examples, words)
    targets = targets / targets.sum(1, keepdim=True).clamp(min=1)

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        logits = model.get_tag_logits(train_images[batch], model.get_tag_word_embeds(features))
        return -(targets[batch] * logits.log_softmax(-1)).sum(1).mean()

    def evaluate() -> tuple[dict, float]:
        predicted = [
            [tag.word for tag in tags]
            for tags in Tagger(model, tokenizer, words, caption_samples=0, imagenet_weight=0).top_words(dev_images, 5)
        ]
        precision = tag_precision(predicted, [e.captions for e in dev_examples])
        return {"dev_tag_precision@5": precision}, precision

    return _train_keeping_best(
        model.tag_head, "tag", len(train_images), args.tag_batch_size, args.tag_epochs, args,
        batch_loss, evaluate, processes,
    )  # fmt: skip


def train_retrieval_head(
    model: OneNetModel,
    train_pooled: torch.Tensor,
    train_texts: torch.Tensor,
    train_owner: torch.Tensor,
    dev_pooled: torch.Tensor,
    dev_texts: torch.Tensor,
    dev_owner: torch.Tensor,
    args: HeadTrainingArguments,
    processes: Processes,
) -> list[dict]:
    """Symmetric InfoNCE over (caption, image) pairs, other captions of the same image masked out; under several
    processes, over the global batch (each process embeds its share, `Processes.gather` joins them)."""

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        images = processes.gather(model.get_retrieval_image_embeds(train_pooled[train_owner[batch]]))
        texts = processes.gather(model.get_retrieval_text_embeds(train_texts[batch]))
        owners = processes.gather(train_owner[batch])
        logits = model.get_retrieval_logits(texts, images)
        same_image = (owners[:, None] == owners[None, :]) & ~torch.eye(len(owners), dtype=torch.bool)
        logits = logits.masked_fill(same_image, -1e4)
        labels = torch.arange(len(owners))
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2

    def evaluate() -> tuple[dict, float]:
        with torch.inference_mode():
            similarity = model.get_retrieval_text_embeds(dev_texts) @ model.get_retrieval_image_embeds(dev_pooled).T
        metrics = retrieval_metrics(similarity, dev_owner)
        return {f"dev_{k}": v for k, v in metrics.items()}, sum(metrics[f"text_to_image_R@{k}"] for k in (1, 5, 10))

    return _train_keeping_best(
        model.retrieval_head, "retrieval", len(train_texts), args.retrieval_batch_size,
        args.retrieval_epochs, args, batch_loss, evaluate, processes,
    )  # fmt: skip


def _heads_to_train(args: HeadTrainingArguments) -> list[str]:
    names = [name.strip() for name in args.heads.split(",") if name.strip()]
    if not names or set(names) - set(HEADS):
        raise OneNetError(f"--heads {args.heads!r}: name one or more of {', '.join(HEADS)}, comma-separated")
    return names


def _fresh_heads(model: OneNetModel, names: list[str]) -> None:
    """New, freshly initialised heads: training starts the same whatever heads (or older shapes) were loaded.

    They are made in `HEADS` order, so their initial weights do not depend on how `--heads` lists them.
    """
    for name in HEADS:
        if name in names:
            head = type(getattr(model, f"{name}_head"))(model.config)
            head.apply(model._init_weights)
            setattr(model, f"{name}_head", head)


def train_heads(args: HeadTrainingArguments) -> Path:
    """Train the heads on a trained caption model and write the whole network to `args.output_dir`.

    Each finished head is checkpointed, so a re-run after an interruption skips it. Heads left out of
    `args.heads` keep the weights (and training log rows) of `args.model_dir`.
    """
    names = _heads_to_train(args)
    check_training_numbers(args)
    model_dir = resolve_model(args.model_dir)  # a missing model is one clear error, before anything is written
    examples = {
        split: read_split(args.data_dir, name, args.data_format)
        for split, name in (("train", args.train_split), ("dev", args.dev_split))
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    processes = Processes(cpu=True)  # alone, or one of several under `accelerate launch`; small heads: CPU
    processes.check_batch_size(args.tag_batch_size, "--tag-batch-size")
    processes.check_batch_size(args.retrieval_batch_size, "--retrieval-batch-size")
    seed_everything(args.seed)
    model = OneNetModel.from_pretrained(model_dir, dtype=torch.float32, ignore_mismatched_sizes=True).eval()
    _fresh_heads(model, names)
    processor = OneNetProcessor.from_pretrained(model_dir)
    model.requires_grad_(False)
    pooled, representations, sentences, owners = {}, {}, {}, {}
    for split, split_examples in examples.items():
        grids = shared_backbone_features(
            model, processor.image_processor, [e.path for e in split_examples], args.cache_dir, processes
        )
        pooled[split], representations[split] = image_inputs_from_features(model, grids)
        if "retrieval" in names:  # captions through the frozen sentence encoder: only the retrieval head reads them
            captions = [caption for e in split_examples for caption in e.captions]
            owners[split] = torch.tensor([i for i, e in enumerate(split_examples) for _ in e.captions])
            with processes.main_first("encoding the captions"):  # the main process fills the cache, the others read it
                sentences[split] = cached_sentence_embeddings(captions, args.cache_dir, model.config.text_encoder_name)

    state_path = output_dir / HEADS_STATE_FILE
    shared = processes.agree(state_path.exists(), f"{state_path} (--output-dir must be one folder every process sees)")
    state = torch.load(state_path, weights_only=False) if shared else {"arguments": asdict(args)}
    if state["arguments"] != asdict(args):
        raise OneNetError(f"{state_path} was written with other arguments; use a new --output-dir")
    for name, train_one in (
        ("tag", lambda: train_tag_head(
            model, processor.tokenizer, representations["train"], examples["train"],
            representations["dev"], examples["dev"], args, processes,
        )),
        ("retrieval", lambda: train_retrieval_head(
            model, pooled["train"], sentences["train"], owners["train"],
            pooled["dev"], sentences["dev"], owners["dev"], args, processes,
        )),
    ):  # fmt: skip
        if name not in names:
            continue
        head = getattr(model, f"{name}_head")
        seed_everything(args.seed)  # each head trains the same whether or not the other one was resumed
        if name in state:
            head.load_state_dict(state[name]["weights"])
            if processes.is_main:
                tqdm.write(f"{name} head already trained in {state_path}; reusing it")
            continue
        head.requires_grad_(True)
        history = train_one()
        head.requires_grad_(False)
        state[name] = {"weights": head.state_dict(), "history": history}
        with processes.shared_outcome(f"saving the {name} head"):
            if processes.is_main:
                torch.save(state, state_path.with_suffix(".tmp"))
                state_path.with_suffix(".tmp").replace(state_path)

    if not processes.is_main:
        return output_dir
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    kept_log = model_dir / HEADS_LOG_FILE
    kept = json.loads(kept_log.read_text()) if kept_log.exists() else []
    kept = [{**row, "head": OLD_HEAD_NAMES.get(row["head"], row["head"])} for row in kept]
    log = [
        row
        for name in HEADS
        for row in (state[name]["history"] if name in names else [r for r in kept if r["head"] == name])
    ]
    write_json(log, output_dir / HEADS_LOG_FILE)
    if (model_dir / LOG_FILE).is_file():  # the caption network's own log goes with it (a release ships it)
        shutil.copyfile(model_dir / LOG_FILE, output_dir / LOG_FILE)
    return output_dir


__all__ = ["HeadTrainingArguments", "train_heads", "train_retrieval_head", "train_tag_head"]
