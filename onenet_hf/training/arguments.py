"""What `onenet train`, `train-heads` and `train-scst` expose, as dataclasses (transformers keeps its
`TrainingArguments` in `training_args.py` the same way): torch-free, so the CLI builds their flags and answers
`--help` at once. The training modules (`captions.py`, `heads.py`, `scst.py`) take them and import them
from here under the same names."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import DEFAULT_CACHE_DIR

HEADS = ("tag", "retrieval")


@dataclass
class CaptionTrainingArguments:
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


@dataclass
class HeadTrainingArguments:
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


@dataclass
class SCSTArguments:
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


__all__ = ["HEADS", "CaptionTrainingArguments", "HeadTrainingArguments", "SCSTArguments"]
