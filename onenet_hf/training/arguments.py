"""What `onenet train`, `train-heads` and `train-scst` expose, as dataclasses (transformers keeps its
`TrainingArguments` in `training_args.py` the same way): torch-free, so the CLI builds their flags and answers
`--help` at once. The training modules (`captions.py`, `heads.py`, `scst.py`) take them and import them
from here under the same names.

Each dataclass checks its numbers when it is made (`__post_init__`), so `onenet train --batch-size 0` is one line
before any data is read, and a value that passed can be used as it is: a seed NumPy takes, a batch of at least one
caption, at least one epoch. What needs the data (a vocabulary that is not empty) is checked where it is read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..errors import OneNetError
from ..options import DEFAULT_CACHE_DIR, MAX_BEAM_SIZE
from ..utils.messages import shorten

HEADS = ("tag", "retrieval")
WholeNumbers = dict[str, tuple[int, int | None]]  # field -> (lowest, highest or None)
MAX_SEED = 2**32 - 1  # what `np.random.seed` takes (`seed_everything`); a larger seed failed with a ValueError
MAX_LAYER_SIZE = 8192  # the model's widths; a decoder LSTM of 8192 already holds about 1 GB of weights
# `onenet train-scst`'s caps, the values of `training.scst`'s (which should import these): memory and time grow with
# the samples per image; Luo 2020 uses 5
MAX_SAMPLES_PER_IMAGE = 64
MAX_IMAGES_PER_BATCH = 1024

# The float arguments of the training commands: what each allows, and the words that say so. A NaN learning rate
# trained NaN weights without a word, a dropout of 2 failed deep in torch.
TRAINING_NUMBERS = {
    "learning_rate": (lambda x: 0 < x <= 1, "above 0 and at most 1"),
    "weight_decay": (lambda x: 0 <= x <= 1, "from 0 to 1"),
    "label_smoothing": (lambda x: 0 <= x < 1, "from 0 to below 1"),
    "gradient_clip": (lambda x: 0 < x <= 1e6, "above 0 and at most 1e6"),
    "dropout": (lambda x: 0 <= x < 1, "from 0 to below 1"),
}


def _flag(name: str) -> str:
    """The command-line flag of a field, as the CLI builds it: `batch_size` is `--batch-size`."""
    return "--" + name.replace("_", "-")


def check_training_numbers(args, skip: tuple[str, ...] = ()) -> None:
    """Each of `TRAINING_NUMBERS` that `args` has, in its range, before any work; NaN, infinity and bools refused.
    `skip` names options that mean something else there (SCST's `dropout` is a switch, not a rate)."""
    for name, (allowed, wording) in TRAINING_NUMBERS.items():
        if not hasattr(args, name) or name in skip:
            continue
        value = getattr(args, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not allowed(value):
            raise OneNetError(f"{_flag(name)} must be a number {wording}, got {shorten(value, 20)}")


def check_whole_numbers(args, limits: WholeNumbers) -> None:
    """Each field named in `limits` a whole number from its low to its high limit (None: no high limit); bools
    and floats are refused. The error names the option as its flag."""
    for name, (low, high) in limits.items():
        value = getattr(args, name)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if high is None and not (whole and value >= low):
            raise OneNetError(f"{_flag(name)} must be >= {low} (a whole number), got {str(value)[:20]}")
        if high is not None and not (whole and low <= value <= high):
            raise OneNetError(f"{_flag(name)} must be {low} to {high} (a whole number), got {str(value)[:20]}")


class CheckedNumbers:
    """A training command's arguments check their numbers when made: the floats of TRAINING_NUMBERS they have (but
    `SKIPPED_NUMBERS`) and each of `WHOLE_NUMBERS` a whole number in its range."""

    WHOLE_NUMBERS: ClassVar[WholeNumbers] = {}
    SKIPPED_NUMBERS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        check_training_numbers(self, skip=self.SKIPPED_NUMBERS)
        check_whole_numbers(self, self.WHOLE_NUMBERS)


@dataclass
class CaptionTrainingArguments(CheckedNumbers):
    """What `onenet train` exposes: data, output, schedule, and the model's size."""

    data_dir: str
    output_dir: str
    data_format: str = "flickr8k"
    train_split: str = "train"
    dev_split: str = "dev"
    cache_dir: str = DEFAULT_CACHE_DIR
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    label_smoothing: float = 0.1
    gradient_clip: float = 5.0
    min_word_frequency: int = 5
    seed: int = 0
    eval_beam_size: int = 1
    horizontal_flip: bool = False
    hidden_size: int = 512
    word_embedding_size: int = 300
    decoder_hidden_size: int = 512
    image_pooling: str = "mean"
    dropout: float = 0.5
    full_determinism: bool = False  # torch's deterministic algorithms and cuDNN (`training.full_determinism`)
    device: str | None = None

    WHOLE_NUMBERS: ClassVar[WholeNumbers] = {
        "epochs": (1, None), "batch_size": (1, None), "warmup_steps": (0, None), "seed": (0, MAX_SEED),
        "min_word_frequency": (1, None),  # too high empties the vocabulary: `training.captions` refuses it
        "eval_beam_size": (1, MAX_BEAM_SIZE), "hidden_size": (1, MAX_LAYER_SIZE),
        "word_embedding_size": (1, MAX_LAYER_SIZE), "decoder_hidden_size": (1, MAX_LAYER_SIZE),
    }  # fmt: skip


@dataclass
class HeadTrainingArguments(CheckedNumbers):
    """What `onenet train-heads` exposes; the defaults are the recipe of the shipped checkpoint."""

    model_dir: str
    data_dir: str
    output_dir: str
    data_format: str = "flickr8k"
    heads: str = ",".join(HEADS)  # the heads to (re)train; the others are kept as the model folder has them
    train_split: str = "train"
    dev_split: str = "dev"
    cache_dir: str = DEFAULT_CACHE_DIR
    tag_epochs: int = 20
    tag_batch_size: int = 128
    retrieval_epochs: int = 10
    retrieval_batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    seed: int = 0

    WHOLE_NUMBERS: ClassVar[WholeNumbers] = {
        "tag_epochs": (1, None), "tag_batch_size": (1, None), "retrieval_epochs": (1, None),
        "retrieval_batch_size": (1, None), "seed": (0, MAX_SEED),
    }  # fmt: skip


@dataclass
class SCSTArguments(CheckedNumbers):
    """What `onenet train-scst` exposes; `model_dir` is a model `onenet train` (or `train-heads`) wrote."""

    model_dir: str
    data_dir: str
    output_dir: str
    data_format: str = "flickr8k"
    train_split: str = "train"
    dev_split: str = "dev"
    cache_dir: str = DEFAULT_CACHE_DIR
    epochs: int = 3
    images_per_batch: int = 50
    samples_per_image: int = 5
    rollout: str = "beam"
    baseline: str = "mean"
    dropout: bool = True
    learning_rate: float = 5e-5
    gradient_clip: float = 1.0
    seed: int = 0
    eval_beam_size: int = 3
    full_determinism: bool = False
    device: str | None = None

    WHOLE_NUMBERS: ClassVar[WholeNumbers] = {
        "epochs": (1, None), "images_per_batch": (1, MAX_IMAGES_PER_BATCH), "seed": (0, MAX_SEED),
        "eval_beam_size": (1, MAX_BEAM_SIZE),
    }  # fmt: skip
    SKIPPED_NUMBERS: ClassVar[tuple[str, ...]] = ("dropout",)  # a switch here, not a rate

    def __post_init__(self) -> None:
        whole = isinstance(self.samples_per_image, int) and not isinstance(self.samples_per_image, bool)
        if not (whole and 2 <= self.samples_per_image <= MAX_SAMPLES_PER_IMAGE):
            raise OneNetError(
                f"--samples-per-image (the beam's size with --rollout beam) must be 2 to {MAX_SAMPLES_PER_IMAGE} "
                f"(the baseline needs 2), got {str(self.samples_per_image)[:20]}"
            )
        super().__post_init__()


__all__ = [
    "HEADS",
    "MAX_IMAGES_PER_BATCH",
    "MAX_LAYER_SIZE",
    "MAX_SAMPLES_PER_IMAGE",
    "MAX_SEED",
    "TRAINING_NUMBERS",
    "CaptionTrainingArguments",
    "HeadTrainingArguments",
    "SCSTArguments",
    "check_training_numbers",
    "check_whole_numbers",
]
