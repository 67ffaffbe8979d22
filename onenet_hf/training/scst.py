"""Self-critical sequence training (Rennie et al. 2017): fine-tune a trained caption decoder on CIDEr-D itself.

For each training image the decoder samples captions; each is rewarded with its CIDEr-D against the image's
references (`CiderD`, idf from the training references), minus a baseline: the mean reward of the image's other
samples (Luo 2020, the default) or the reward of its greedy caption (Rennie et al.). The policy gradient raises
the log-probability of captions that beat the baseline. It runs on cached backbone features, like `train`.

`rollout="beam"` rewards the captions beam search would choose among instead of samples: each image's beam n-best
list, with the decoder's probabilities renormalised over it, and the loss is the expected negative reward under
them (minimum risk training, Shen et al. 2016; the sequence-level risk of Edunov et al. 2018). Sampled SCST
sharpens the sampling distribution, which the shipped decoding (beam 3) does not use. `dropout=True`
differentiates the captions' log-probabilities with the decoder's dropout on, as in cross-entropy training: the
decoder has nearly learned the training images' references, and the masks keep it from just sharpening on them.

Only the decoder's recurrent part and output layer learn (`SCST_TRAINABLE`): the image representation and the
word embeddings serve other uses (similar images, similar words, analogies, tags, search) and stay bit for bit,
and so do the heads. Checkpointed every epoch and resumable; every epoch's dev figures go to `SCST_LOG_FILE`,
with the starting model's as epoch 0, and the best epoch by dev CIDEr (the start included) is written.

The defaults are the third stage of the shipped checkpoint: beam rollout with dropout, 3 epochs, epochs chosen by
beam-3 dev CIDEr (the release's decoding); `rollout="sample", dropout=False` is Rennie et al.'s SCST.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage, read_split
from ..data.feature_cache import cached_backbone_features
from ..decoding import beam_search, generate_candidates, sample_sequences
from ..errors import OneNetError
from ..evaluation import caption_diversity, evaluate_on_features
from ..hub import resolve_model
from ..modeling_onenet import OneNetModel, never_generated_token_ids
from ..processing_onenet import OneNetProcessor
from ..utils.atomic_files import write_json
from ..utils.distributed import launched_processes
from .arguments import SCSTArguments
from .captions import LOG_FILE, epoch_seed, full_determinism, save_atomically, seed_everything
from .cider import CiderD
from .heads import HEADS_LOG_FILE

SCST_STATE_FILE = "scst_state.pt"
SCST_LOG_FILE = "scst_training_log.json"
BEFORE_RECORDED = {"rollout": "sample", "dropout": False}  # how runs went before these options were recorded
SCST_TRAINABLE = ("decoder.init_state.", "decoder.lstm.", "decoder.output_projection.", "decoder.output_bias")
BASELINES = ("mean", "greedy")
ROLLOUTS = ("sample", "beam")
ORDER_STREAM, SAMPLE_STREAM, DROPOUT_STREAM = 0, 1, 2  # an epoch's random streams, see `training.epoch_seed`


def check_rollout(rollout: str, baseline: str) -> None:
    """A known rollout and baseline, and no baseline but the default with beam rollouts (risk has its own); named
    as `onenet train-scst`'s options, which `SCSTArguments` mirrors."""
    if baseline not in BASELINES:
        raise OneNetError(f"--baseline {baseline!r}: choose one of {', '.join(BASELINES)}")
    if rollout not in ROLLOUTS:
        raise OneNetError(f"--rollout {rollout!r}: choose one of {', '.join(ROLLOUTS)}")
    if rollout == "beam" and baseline != "mean":
        raise OneNetError("--rollout beam takes no --baseline: its baseline is the expected reward over the beam")


def reference_token_ids(tokenizer, examples: list[CaptionedImage]) -> list[list[list[int]]]:
    """Each image's reference captions as token ids without BOS and EOS: the n-grams CIDEr-D rewards."""
    return [[ids[1:-1] for ids in tokenizer(list(e.captions), add_special_tokens=True)["input_ids"]] for e in examples]


def baselines(rewards: torch.Tensor, greedy_rewards: torch.Tensor | None) -> torch.Tensor:
    """(images, samples) baselines: each sample's is the mean reward of its image's other samples, or, given
    `greedy_rewards` (images,), the reward of the image's greedy caption."""
    if greedy_rewards is not None:
        return greedy_rewards[:, None].expand_as(rewards)
    samples = rewards.shape[1]
    return (rewards.sum(1, keepdim=True) - rewards) / (samples - 1)


def risk(log_likelihoods: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """Mean over images of the expected negative reward of (images, candidates) captions, under each image's
    caption probabilities renormalised over its candidates; a candidate with log-likelihood -inf is padding."""
    return -(log_likelihoods.softmax(1) * rewards).sum(1).mean()


def _words(sequence: list[int], eos_token_id: int) -> list[int]:
    return sequence[: sequence.index(eos_token_id)] if eos_token_id in sequence else sequence


def scst_loss(
    model: OneNetModel,
    cider: CiderD,
    image_embeds: torch.Tensor,
    images: list[int],
    samples_per_image: int,
    baseline: str,
    seed: int,
    rollout: str = "sample",
    dropout: bool = False,
) -> tuple[torch.Tensor, float]:
    """The loss of one batch and its captions' mean CIDEr-D reward.

    `rollout="sample"`: the policy gradient of captions drawn (`sample_sequences`, seeded) from the decoder, the
    same policy whose log-probabilities are then differentiated. `rollout="beam"`: the `risk` of each image's beam
    n-best list (`samples_per_image` long, otherwise searched as the model's generation config asks).
    Captions are decoded in eval mode, whatever the model's mode (given back after); padding, unknown-word and start
    tokens are never said. `dropout` turns the decoder's dropout on (global generator) for the differentiated pass
    only."""
    check_rollout(rollout, baseline)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            rows, ranks, words, rewards, greedy_rewards = _rollouts(
                model, cider, image_embeds, images, samples_per_image, baseline, seed, rollout
            )
        model.train(dropout)
        token_ids = [[model.config.bos_token_id, *w, model.config.eos_token_id] for w in words]
        log_probs = model.caption_token_log_probs(
            token_ids, image_embeds[rows], suppress_token_ids=never_generated_token_ids(model.config)
        )
    finally:
        model.train(was_training)
    log_likelihood = log_probs.sum(1)
    mean_reward = rewards[rows, ranks].mean().item()
    if rollout == "beam":
        padded = torch.full((len(images), samples_per_image), float("-inf"), device=log_likelihood.device)
        return risk(padded.index_put((rows, ranks), log_likelihood), rewards.to(log_likelihood.device)), mean_reward
    advantages = (rewards - baselines(rewards, greedy_rewards)).flatten().to(image_embeds.device)
    return -(advantages * log_likelihood).mean(), mean_reward


def _rollouts(model, cider, image_embeds, images, samples_per_image, baseline, seed, rollout):
    """The batch's captions as (image row, rank) slots, their token ids, the (images, samples_per_image) reward
    matrix (0 where a beam returned fewer) and, for the greedy baseline, the greedy captions' rewards."""
    config = model.config
    suppressed = never_generated_token_ids(config)
    if rollout == "beam":
        generation = copy.deepcopy(model.generation_config)
        generation.num_beams = samples_per_image
        candidates = generate_candidates(model, image_embeds, generation)
        slots = [(row, rank) for row, hypotheses in enumerate(candidates) for rank in range(len(hypotheses))]
        words = [candidates[row][rank].token_ids for row, rank in slots]
    else:
        samples = sample_sequences(
            model.decoder_step, model.initial_state(image_embeds), config.bos_token_id, config.eos_token_id,
            samples_per_image, config.max_caption_length + 1, suppressed, seed,
        ).token_ids  # fmt: skip
        slots = [(row, rank) for row in range(len(images)) for rank in range(samples_per_image)]
        words = [_words(row, config.eos_token_id) for row in samples.flatten(0, 1).tolist()]
    rows, ranks = (torch.tensor(column) for column in zip(*slots, strict=True))
    rewards = torch.zeros(len(images), samples_per_image)
    rewards[rows, ranks] = torch.tensor(
        cider.scores(words, [images[row] for row in rows.tolist()]), dtype=torch.float32
    )
    greedy_rewards = None
    if baseline == "greedy":
        greedy = beam_search(
            model.decoder_step, model.initial_state(image_embeds), config.bos_token_id, config.eos_token_id,
            beam_size=1, max_length=config.max_caption_length, suppress_token_ids=suppressed,
        )  # fmt: skip
        greedy_rewards = torch.tensor(cider.scores([h.token_ids for h in greedy], images), dtype=torch.float32)
    return rows, ranks, words, rewards, greedy_rewards


def _dev_figures(model, processor, dev_features, dev_examples, beam_size: int) -> dict[str, float]:
    scores, captions = evaluate_on_features(model, processor, dev_features, dev_examples, beam_size)
    return {**scores, **caption_diversity(captions)}


def train_scst(args: SCSTArguments) -> Path:
    """Fine-tune `args.model_dir`'s decoder with SCST and write the best epoch by dev CIDEr to `args.output_dir`.

    Re-running with the same arguments resumes after the last finished epoch; the result is bit-identical to an
    uninterrupted run's on one machine (see `training`). One process only: its sampling and rewards are not
    split across processes, so `accelerate launch` with several is refused rather than run twice over."""
    if launched_processes() > 1:
        raise OneNetError(
            "train-scst runs as one process (it is not distributed); run it without accelerate launch, or with "
            "--num_processes 1"
        )
    check_rollout(args.rollout, args.baseline)  # its numbers `SCSTArguments` checked when it was made
    with full_determinism(args.full_determinism):
        return _train_scst(args)


def _train_scst(args: SCSTArguments) -> Path:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model_dir = resolve_model(args.model_dir)
    train_examples = read_split(args.data_dir, args.train_split, args.data_format)
    dev_examples = read_split(args.data_dir, args.dev_split, args.data_format)
    output_dir = Path(args.output_dir)
    if output_dir.resolve() == model_dir.resolve():
        raise OneNetError("--output-dir must differ from --model-dir: the starting model is kept as it is")
    output_dir.mkdir(parents=True, exist_ok=True)

    seed_everything(args.seed)
    model = OneNetModel.from_pretrained(model_dir, dtype=torch.float32).to(device).eval()
    processor = OneNetProcessor.from_pretrained(model_dir)
    model.requires_grad_(False)
    trainable = {name: p for name, p in model.named_parameters() if name.startswith(SCST_TRAINABLE)}
    for parameter in trainable.values():
        parameter.requires_grad_(True)
    train_features = cached_backbone_features(
        model, processor.image_processor, [e.path for e in train_examples], args.cache_dir
    )
    dev_features = cached_backbone_features(
        model, processor.image_processor, [e.path for e in dev_examples], args.cache_dir
    )
    with torch.no_grad():  # the representation is frozen: compute it once
        train_embeds = torch.cat(
            [
                model.get_image_features(
                    backbone_features=torch.from_numpy(np.array(train_features[s : s + 256])).to(device)
                )
                for s in range(0, len(train_examples), 256)
            ]
        )
    cider = CiderD(reference_token_ids(processor.tokenizer, train_examples))
    optimizer = torch.optim.Adam(list(trainable.values()), lr=args.learning_rate)

    state_path = output_dir / SCST_STATE_FILE
    recorded = {k: v for k, v in asdict(args).items() if k != "device"}
    if state_path.exists():
        state = torch.load(state_path, map_location=device, weights_only=False)
        # a state written before an option existed recorded no value for it: it ran as the code did then
        stored = {field.name: field.default for field in fields(SCSTArguments)} | BEFORE_RECORDED | state["arguments"]
        if {name: stored[name] for name in recorded} != recorded:
            raise OneNetError(f"{state_path} was written with other arguments; use a new --output-dir")
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best, history = state["epoch"] + 1, state["best"], state["history"]
        tqdm.write(f"resuming after SCST epoch {state['epoch']} (best dev CIDEr so far {best:.4f})")
    else:
        history = [{"epoch": 0, **_dev_figures(model, processor, dev_features, dev_examples, args.eval_beam_size)}]
        tqdm.write(json.dumps(history[-1]))
        start_epoch, best = 1, history[0]["CIDEr"]
        _save_model(model, processor, model_dir, output_dir)

    for epoch in range(start_epoch, args.epochs + 1):
        order = torch.randperm(len(train_examples), generator=torch.Generator().manual_seed(
            epoch_seed(args.seed, epoch, ORDER_STREAM)))  # fmt: skip
        sample_seeds = torch.Generator().manual_seed(epoch_seed(args.seed, epoch, SAMPLE_STREAM))
        torch.manual_seed(epoch_seed(args.seed, epoch, DROPOUT_STREAM))
        rewards, bar = [], tqdm(order.split(args.images_per_batch), desc=f"SCST epoch {epoch}/{args.epochs}")
        for batch in bar:
            seed = int(torch.randint(2**62, (1,), generator=sample_seeds))
            loss, reward = scst_loss(
                model, cider, train_embeds[batch], batch.tolist(), args.samples_per_image, args.baseline, seed,
                rollout=args.rollout, dropout=args.dropout,
            )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(trainable.values()), args.gradient_clip)
            optimizer.step()
            rewards.append(reward)
            bar.set_postfix(reward=f"{reward:.3f}")
        figures = _dev_figures(model, processor, dev_features, dev_examples, args.eval_beam_size)
        history.append({"epoch": epoch, "train_CIDEr-D_reward": float(np.mean(rewards)), **figures})
        tqdm.write(json.dumps(history[-1]))
        if figures["CIDEr"] > best:
            best = figures["CIDEr"]
            _save_model(model, processor, model_dir, output_dir)
        save_atomically(
            {
                "arguments": recorded,
                "epoch": epoch,
                "best": best,
                "history": history,
                "trainable": {name: p.detach().clone() for name, p in trainable.items()},
                "optimizer": optimizer.state_dict(),
            },
            state_path,
        )
        write_json(history, output_dir / SCST_LOG_FILE)
    return output_dir


def _save_model(model: OneNetModel, processor: OneNetProcessor, model_dir: Path, output_dir: Path) -> None:
    """The whole network (heads included) and its processor, with the starting model's training logs beside."""
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    for log in (LOG_FILE, HEADS_LOG_FILE):
        if (model_dir / log).exists() and not (output_dir / log).exists():
            shutil.copyfile(model_dir / log, output_dir / log)


__all__ = [
    "BASELINES",
    "ROLLOUTS",
    "SCSTArguments",
    "SCST_TRAINABLE",
    "baselines",
    "check_rollout",
    "risk",
    "scst_loss",
    "train_scst",
]
