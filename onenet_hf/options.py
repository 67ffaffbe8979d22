"""Defaults and limits of the options users set, and their checks: torch-free, so the CLI answers at once.

`onenet CMD --help` shows these defaults and limits, and `onenet` refuses a value outside them before a model
loads, without importing torch or transformers. Each is defined here once; the module that applies it imports it
under its own name (`decoding.MAX_BEAM_SIZE`, `create.visualize.STEPS`, `explore.neurons.check_sizes`), so both names
are the same object.
"""

from __future__ import annotations

import os
import sys
import warnings
from numbers import Integral
from pathlib import Path

from .errors import OneNetError
from .utils.atomic_files import check_output_file, check_output_folder
from .utils.checks import check_integer
from .utils.messages import shorten
from .utils.ranking import check_k

# Captions: beam search (decoding.py), its length penalty (modeling_onenet.py), the ImageNet labels it must say
# (label_guidance.py).
MAX_NO_REPEAT_NGRAM_SIZE = 24  # the longest caption the default generation config allows
MAX_BEAM_SIZE = 64  # one image at beam 64 decodes in under 2 s on 2 CPU cores; 2048 took 8 s and 256 MB more
# |length_penalty| at most this (1.0 is the default; beyond it captions rank by length alone): (tokens + 1) ** penalty
# stays a finite, non-zero float, where 1000 overflowed and -1000 rounded to 0
MAX_LENGTH_PENALTY = 10.0
LABEL_THRESHOLD = 0.3  # a label word's chance (summed over its classes) from which the caption must say it


def check_beam_size(beam_size: int, maximum: int = MAX_BEAM_SIZE) -> None:
    """A beam of 1 (greedy) to `maximum` hypotheses: the cap bounds time and memory (both grow with the beam)."""
    check_integer("beam_size", beam_size, 1, maximum)


def check_no_repeat_ngram_size(size: int) -> None:
    """0 (off) or an n-gram length from 1 to MAX_NO_REPEAT_NGRAM_SIZE."""
    check_integer("no_repeat_ngram_size", size, 0, MAX_NO_REPEAT_NGRAM_SIZE, low_text="0 (off)")


def check_length_penalty(penalty: float) -> None:
    """A length penalty from -MAX_LENGTH_PENALTY to MAX_LENGTH_PENALTY; NaN, infinities and bools are refused."""
    if not isinstance(penalty, (int, float)) or isinstance(penalty, bool) or not abs(penalty) <= MAX_LENGTH_PENALTY:
        limit = f"{MAX_LENGTH_PENALTY:g}"
        raise OneNetError(f"length_penalty must be a number from -{limit} to {limit}, got {str(penalty)[:20]}")


def check_label_threshold(threshold: float) -> None:
    """A chance from 0 (guidance off) to 1; NaN, inf and bools are refused."""
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
        raise OneNetError(f"imagenet_labels must be a chance from 0 (off) to 1, got {str(threshold)[:20]}")


# Tags (uses/tag.py).
CAPTION_SAMPLES = 100  # decoder captions sampled per tagged image; with CAPTION_WEIGHT, chosen on Flickr8k dev
MAX_CAPTION_SAMPLES = 1000  # bounds memory (samples x images x vocabulary per step); 200 gained under 0.001
CAPTION_WEIGHT = 2.0
IMAGENET_WEIGHT = 0.5  # chosen on Flickr8k dev and coco-mini-dev: lifts the second, leaves the first unchanged

# Words, search and maps (uses/words.py, uses/search.py, explore/embedding_map.py).
ANALOGY_METHODS = ("3cosadd", "3cosmul")
SEARCH_METHODS = ("reranked", "retrieval", "invert", "glove")
MAP_METHODS = ("opentsne", "sklearn-tsne")
COLOR_BY = ("class", "tag")
MAP_SUFFIXES = (".html", ".png")


def check_map_path(path: str | os.PathLike) -> Path:
    """A map's output file: `.html` or `.png`, in a folder that exists (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() not in MAP_SUFFIXES:
        raise OneNetError(f"a map is written as {' or '.join(MAP_SUFFIXES)}; got {shorten(path.name)}")
    return check_output_file(path)


# Neurons, layers and explanations (explore/neurons.py, explore/layers.py, explore/explain.py).
NEURON_KINDS = ("unit", "channel")
MAX_NEURON_IMAGES = 64  # top gallery images of one neuron (a contact sheet of 8 rows)
MAX_NEURON_WORDS = 100  # words listed per neuron
MAX_NEURONS = 16  # distinctive neurons of one image; each costs a decoder pass over the word sample
CHANNELS = 16  # channels shown per stage by default
MAX_CHANNELS = 64  # channels shown per stage at most (an 8x8 grid)


def check_neuron_sizes(k: int, n_words: int, n: int = 1) -> None:
    """Caps on one request: k top images per neuron, `n_words` words per neuron (0: skip the decoder), and n
    distinctive neurons of an image."""
    check_k(k, MAX_NEURON_IMAGES)
    check_integer("n_words", n_words, 0, MAX_NEURON_WORDS)
    check_integer("n", n, 1, MAX_NEURONS)


def check_channels(channels: int) -> None:
    """Channels shown per stage: 1 to MAX_CHANNELS (a stage with fewer shows all of its own)."""
    check_integer("channels", channels, 1, MAX_CHANNELS)


# The optimisation uses (imagine/optimization.py; imagine/visualize.py, imagine.py, dream.py, style.py).
MAX_STEPS = 2000  # a work-size cap: one call stays within minutes on 2 CPU cores (the Space caps lower)
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 64, 1024  # pixels on a side; time and memory grow with the square
MAX_OPTIMIZED_IMAGES = 8  # images optimised together (diversity)
VISUALIZE_STEPS = 128  # under 30 s for one 260x260 image on 2 CPU cores (bench/quality/create_quality.py)
# 15 s per 260x260 image on average on a 2-core AMD EPYC (bench/quality/create_quality.py, run 4); in exploratory runs
# 192 steps kept 17 of 22 sentences against 14 at 96 (README, Create)
IMAGINE_STEPS = 192
# the stage that feeds the representation: whole-object motifs (eyes, fur); earlier stages give textures
DREAM_STAGE = "head"
DREAM_STEPS = 80  # gradient steps over all octaves: under 10 s at 260 on 2 CPU cores (bench/quality/create_quality.py)
DREAM_OCTAVES = 3
MAX_DREAM_OCTAVES = 6  # the smallest octave of a 260-pixel photo is then 260 / 1.4 ** 5 = 48 pixels
DREAM_STRENGTH = 1.0  # step size in hundredths of the pixel range
STYLE_STEPS = 200  # about 30 s at 260 on 2 CPU cores (bench/quality/create_quality.py)
CONTENT_WEIGHT = 1.0
STYLE_WEIGHT = 10.0


def check_steps(steps: int, limit: int = MAX_STEPS) -> int:
    """Steps: 1 to `limit`."""
    return check_integer("steps", steps, 1, limit)


def check_image_size(size: int, limit: int = MAX_IMAGE_SIZE) -> int:
    """An image side in pixels from MIN_IMAGE_SIZE to `limit`."""
    return check_integer("image size", size, MIN_IMAGE_SIZE, limit, high_text=f"{limit:,} pixels")


def check_seed(seed: int) -> int:
    """A random seed: a whole number from 0 to 2**63 - 1, as torch's generator takes."""
    return check_integer("seed", seed, 0, 2**63 - 1, high_text="2**63 - 1")


def check_image_count(images: int) -> int:
    """Images optimised together: 1 to MAX_OPTIMIZED_IMAGES."""
    return check_integer("images", images, 1, MAX_OPTIMIZED_IMAGES)


def check_octaves(octaves: int, steps: int) -> None:
    """1 to MAX_DREAM_OCTAVES octaves, each given at least one of the `steps`."""
    check_integer("octaves", octaves, 1, MAX_DREAM_OCTAVES)
    # a steps value bad on its own is check_steps' to name
    if isinstance(steps, Integral) and not isinstance(steps, bool) and 1 <= steps < octaves:
        raise OneNetError(f"steps ({steps}) must be at least the number of octaves ({octaves})")


# Galleries, ONNX, evaluation and the feature cache (ray_indexing.py, onnx/, evaluation/, data/feature_cache.py).
MAX_RAY_WORKERS = 1024  # actors one build may ask for
# photos the static int8 image encoder calibrates its activation scales on (and its bias correction reads the
# first 512 of): 1,024 train photos kept dev captions closer to fp32 than 256 did (docs, "ONNX and int8")
CALIBRATION_IMAGES = 1_024
MAX_CALIBRATION_IMAGES = 5_000
VARIANTS = ("fp32", "int8-dynamic", "fp16", "int8-static", "fastest")
# old variant names -> their names now; accepted (saying so) until the next release
RENAMED_VARIANTS = {"int8": "int8-dynamic"}
EVALUATION_TASKS = ("captions", "tags", "analogy", "retrieval")
DEFAULT_CACHE_DIR = str(Path.home() / ".cache" / "onenet" / "features")  # training, head training, evaluation
EXPORT_CACHE_DIR = str(Path.home() / ".cache" / "onenet" / "onnx")  # exports made once for the Space (`export_once`)


# The Space (space.py): what `python spaces/app.py --help` shows before gradio and torch load.
SPACE_MAX_BATCH_SIZE = 8
# captions and tags on the dynamic int8 graphs: README "The Space under load" measures why
SPACE_ONNX_VARIANT = "int8-dynamic"


MAX_WEIGHT = 100.0  # weights of a vote or of steering: far above any that helps, below float overflow


def variant_option(value: str) -> str:
    """An `--onnx-variant` value under its name now; an old name says on stderr, in one line, what replaces it
    (the commands' form of `variant_name`'s warning)."""
    if value in RENAMED_VARIANTS:
        print(f"onenet: --onnx-variant {value} is deprecated, use {RENAMED_VARIANTS[value]}", file=sys.stderr)
    return RENAMED_VARIANTS.get(value, value)


def variant_name(variant: str) -> str:
    """An ONNX variant's name now: an old name (`int8`, now `int8-dynamic`, beside `int8-static`) still works until
    the next release, with a FutureWarning saying what replaces it."""
    if variant in RENAMED_VARIANTS:
        new = RENAMED_VARIANTS[variant]
        warnings.warn(
            f"the ONNX variant {variant!r} is now {new!r}; the old name goes in the next release",
            FutureWarning,
            stacklevel=3,
        )
        return new
    return variant


def check_caption_samples(samples: int) -> int:
    """Captions a tagger samples per image: 0 (the tag head alone) to MAX_CAPTION_SAMPLES."""
    return check_integer("caption_samples", samples, 0, MAX_CAPTION_SAMPLES)


def check_weight(name: str, weight: float, maximum: float = MAX_WEIGHT) -> None:
    """A vote's or steering's weight: a real number from 0 (off) to `maximum`; NaN, inf and bools are refused."""
    if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not 0 <= weight <= maximum:
        raise OneNetError(f"{name} must be a number from 0 (off) to {maximum:g}, got {str(weight)[:20]}")


# Text a user gives (a search query, a sentence for the decoder to read): longer is an error, never silently cut.
MAX_TEXT_CHARACTERS = 1000


def check_text_length(text: str, what: str) -> None:
    """Text a user gives within `MAX_TEXT_CHARACTERS` (`what` names it in the error), as every use checks it."""
    if len(text) > MAX_TEXT_CHARACTERS:
        raise OneNetError(f"the {what} has {len(text):,} characters; give at most {MAX_TEXT_CHARACTERS:,}")


__all__ = [
    "MAX_CAPTION_SAMPLES",
    "check_caption_samples",
    "check_image_count",
    "check_image_size",
    "check_seed",
    "check_steps",
    "MAX_TEXT_CHARACTERS",
    "check_text_length",
    "MAX_WEIGHT",
    "check_weight",
    "SPACE_MAX_BATCH_SIZE",
    "SPACE_ONNX_VARIANT",
    "ANALOGY_METHODS",
    "CALIBRATION_IMAGES",
    "CAPTION_SAMPLES",
    "CAPTION_WEIGHT",
    "CHANNELS",
    "COLOR_BY",
    "CONTENT_WEIGHT",
    "DEFAULT_CACHE_DIR",
    "EXPORT_CACHE_DIR",
    "DREAM_OCTAVES",
    "DREAM_STAGE",
    "DREAM_STEPS",
    "DREAM_STRENGTH",
    "EVALUATION_TASKS",
    "IMAGENET_WEIGHT",
    "IMAGINE_STEPS",
    "LABEL_THRESHOLD",
    "MAP_METHODS",
    "MAP_SUFFIXES",
    "MAX_BEAM_SIZE",
    "MAX_CALIBRATION_IMAGES",
    "MAX_CHANNELS",
    "MAX_IMAGE_SIZE",
    "MAX_LENGTH_PENALTY",
    "MAX_NEURONS",
    "MAX_NEURON_IMAGES",
    "MAX_NEURON_WORDS",
    "MAX_NO_REPEAT_NGRAM_SIZE",
    "MAX_OPTIMIZED_IMAGES",
    "MAX_RAY_WORKERS",
    "MAX_STEPS",
    "MIN_IMAGE_SIZE",
    "NEURON_KINDS",
    "SEARCH_METHODS",
    "STYLE_STEPS",
    "STYLE_WEIGHT",
    "VARIANTS",
    "VISUALIZE_STEPS",
    "check_beam_size",
    "check_channels",
    "check_label_threshold",
    "check_length_penalty",
    "check_map_path",
    "check_neuron_sizes",
    "check_no_repeat_ngram_size",
    "check_output_folder",
]
