"""Create, imagined captions (`OneNet.imagine`, `onenet imagine TEXT`): an image for a sentence.

The image-space counterpart of describe-to-search's inversion, in two steps. First the decoder imagines what the
backbone should see: pooled backbone features, started at the mean of real photos' (a `FeatureBank`, 512
Flickr8k training photos by default) and kept positive, moved by Adam until the decoder finds the
sentence likely (mean token log-probability, `OneNetModel.caption_token_log_probs`). Then pixels, parameterised
and regularised as in feature visualisation, are optimised until their image representation points the same way
as the imagined one (cosine), with a small weight on the sentence's likelihood itself. Straight pixel ascent on
the sentence's likelihood stalls, and chasing a mix of the bank's photos imagined fewer sentences (11 of 30 dev
captions at 96 steps, against 17 now; README, Create).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from ..errors import OneNetError
from ..modeling_onenet import OneNetModel
from ..options import IMAGINE_STEPS as STEPS
from ..processing_onenet import OneNetProcessor
from ..uses.caption import sentence_token_ids
from .memory import check_memory
from .optimization import (
    FourierImage,
    Snapshot,
    backbone_input,
    check_image_size,
    check_learning_rate,
    check_seed,
    check_steps,
    optimize,
    random_transform,
    with_gradients,
)

LEARNING_RATE = 0.05
FEATURE_STEPS = 150  # decoder passes on one vector: a small share of an imagining's time
FEATURE_LEARNING_RATE = 0.05
# Near the imagined representation, the sentence's own likelihood refines the image (alone, from noise, it stalls);
# exploratory runs kept 14 of 22 sentences at this weight against 13 at 0.3 (README, Create).
LIKELIHOOD_WEIGHT = 0.1
BANK_FILE = "imagine_bank_{backbone}.npy"
BANK_SIZE = 512


def bank_path(backbone_name: str) -> Path:
    return Path(str(resources.files("onenet_hf") / "resources" / BANK_FILE.format(backbone=backbone_name)))


@cache
def _load_bank(path: str) -> torch.Tensor:
    try:
        array = np.load(path)
    except (OSError, ValueError) as error:
        raise OneNetError(f"cannot read the feature bank {path}: {error}") from None
    if array.ndim != 2 or not np.isfinite(array).all():
        raise OneNetError(f"the feature bank {path} must be a finite (photos, channels) array, got {array.shape}")
    return torch.from_numpy(array.astype(np.float32))


def feature_bank(model: OneNetModel, path: str | Path | None = None) -> torch.Tensor:
    """Pooled backbone features (photos, 1280) of real photos: `path`, or the one shipped for the backbone."""
    path = Path(path) if path is not None else bank_path(model.config.backbone_name)
    if not path.is_file():
        raise OneNetError(f"no feature bank at {path}; build one with tools/imagine_bank.py (in a checkout)")
    bank = _load_bank(str(path.resolve()))
    if bank.shape[1] != model.config.backbone_hidden_size:
        raise OneNetError(
            f"the feature bank {path} has {bank.shape[1]} channels; this backbone pools "
            f"{model.config.backbone_hidden_size}"
        )
    return bank.to(model.device)


def build_feature_bank(
    model: OneNetModel,
    processor: OneNetProcessor,
    image_paths: Sequence[str | Path],
    count: int = BANK_SIZE,
    seed: int = 0,
    cache_dir: str = DEFAULT_CACHE_DIR,
) -> np.ndarray:
    """Pooled features (count, 1280) of `count` photos drawn (seeded) from `image_paths`, as float16."""
    if not 1 <= count <= len(image_paths):
        raise OneNetError(f"count must be 1 to {len(image_paths)} (the photos given), got {count}")
    chosen = sorted(np.random.default_rng(seed).choice(len(image_paths), count, replace=False).tolist())
    grids = cached_backbone_features(model, processor.image_processor, [image_paths[i] for i in chosen], cache_dir)
    return np.stack([np.asarray(grid, dtype=np.float32).mean((1, 2)) for grid in grids]).astype(np.float16)


def imagined_features(model: OneNetModel, token_ids: list[int], bank: torch.Tensor) -> torch.Tensor:
    """Pooled backbone features (1, 1280) under which the decoder finds the sentence likely: the bank's mean moved
    by Adam on the sentence's mean token log-probability, in log space so that they stay positive, as a photo's
    pooled activations are. In exploratory runs (README, Create) free features carried sentences' specifics that
    a mix of the bank's photos did not. The model's weights and training flag are left as they were."""
    with model.input_gradients():
        log_features = bank.mean(0, keepdim=True).clamp(min=1e-3).log().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([log_features], lr=FEATURE_LEARNING_RATE)
        for _ in range(FEATURE_STEPS):
            image_embeds = model.get_image_features_from_pooled(log_features.exp())
            log_prob = model.caption_token_log_probs([token_ids], image_embeds)[0].mean()
            (log_features.grad,) = torch.autograd.grad(-log_prob, [log_features])
            optimizer.step()
    return log_features.detach().exp()


@with_gradients
def imagine_steps(
    model: OneNetModel,
    processor: OneNetProcessor,
    text: str,
    steps: int = STEPS,
    seed: int = 0,
    size: int = 260,
    learning_rate: float = LEARNING_RATE,
    snapshot_every: int = 0,
    bank: str | Path | None = None,
) -> Iterator[Snapshot]:
    """Optimise one image so the decoder says `text`; yields each step's `Snapshot`, whose objective is the
    cosine between the image's representation and the imagined one (from `imagined_features`) plus
    LIKELIHOOD_WEIGHT x the sentence's mean token log-probability given the image. A word outside the caption
    vocabulary is an error: the decoder cannot say it."""
    token_ids = sentence_token_ids(processor, text)
    steps, seed, size = check_steps(steps), check_seed(seed), check_image_size(size)
    check_memory(size)
    learning_rate = check_learning_rate(learning_rate)
    model.eval()
    imagined = imagined_features(model, token_ids, feature_bank(model, bank))
    with torch.no_grad():
        target = model.get_image_features_from_pooled(imagined)
    generator = torch.Generator().manual_seed(seed)
    image = FourierImage(size, 1, generator).to(model.device)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std

    def objective(pixels: torch.Tensor) -> torch.Tensor:
        grid = model.get_backbone_features(backbone_input(model, random_transform(pixels, generator), mean, std))
        pooled = model.get_pooled_features(grid.float())
        image_embeds = model.get_image_features_from_pooled(pooled)
        log_prob = model.caption_token_log_probs([token_ids], image_embeds)[0].mean()
        return torch.cosine_similarity(image_embeds, target).mean() + LIKELIHOOD_WEIGHT * log_prob

    yield from optimize(image, objective, steps, learning_rate, snapshot_every)


__all__ = ["BANK_SIZE", "STEPS", "build_feature_bank", "feature_bank", "imagine_steps", "imagined_features"]
