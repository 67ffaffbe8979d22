"""Shared fixtures: a tiny synthetic captioned-image set in the Flickr8k layout, made fresh by the tests."""

from __future__ import annotations

import itertools
import random
import struct
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from onenet_hf import OneNet, OneNetConfig, OneNetImageProcessor, OneNetModel, OneNetProcessor, build_tokenizer
from onenet_hf.data.datasets import FLICKR8K_SPLIT_FILES
from onenet_hf.training.captions import CaptionTrainingArguments, train

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (240, 220, 20)}
SHAPES = ("circle", "square", "triangle")
TEMPLATES = ("a {c} {s}", "a {c} {s} on a white background", "one {c} {s}", "a big {c} {s}", "the {c} {s}")


def draw_shape(colour: str, shape: str, seed: int, size: int = 96) -> Image.Image:
    """A white image with one coloured shape at a random position and scale."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    r = rng.randint(size // 3, size // 2 - 4)
    cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return image


def write_shape_gallery(folder: Path, first_seed: int) -> Path:
    """One image of each colour and shape (12), `colour_shape.png`, drawn with seeds from `first_seed` on."""
    for k, (colour, shape) in enumerate(itertools.product(COLOURS, SHAPES)):
        draw_shape(colour, shape, first_seed + k).save(folder / f"{colour}_{shape}.png")
    return folder


def write_shapes_dataset(root: Path, per_class: dict[str, int]) -> Path:
    """Flickr8k-layout folder: images/, Flickr8k.token.txt and one split file per entry of `per_class`."""
    (root / "images").mkdir(parents=True)
    lines = []
    seed = 0
    for split, count in per_class.items():
        names = []
        for (colour, shape), k in itertools.product(itertools.product(COLOURS, SHAPES), range(count)):
            name = f"{split}_{colour}_{shape}_{k}.jpg"
            draw_shape(colour, shape, seed).save(root / "images" / name, quality=95)
            seed += 1
            names.append(name)
            lines += [f"{name}#{i}\t{t.format(c=colour, s=shape)} ." for i, t in enumerate(TEMPLATES)]
        (root / FLICKR8K_SPLIT_FILES[split]).write_text("\n".join(names) + "\n")
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """Synthetic shapes set: 4 train and 1 dev image for each of 12 colour-shape classes."""
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes"), {"train": 4, "dev": 1})


def png_claiming_size(path, width: int, height: int) -> None:
    """A tiny PNG whose header claims a huge size: a decompression bomb as far as a decoder can tell."""
    Image.new("1", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def png_with_chunk(path, kind: bytes, header: bytes) -> None:
    """A small PNG carrying a `kind` chunk whose compressed text inflates past Pillow's MAX_TEXT_CHUNK (1 MB)."""
    Image.new("RGB", (8, 8)).save(path)
    data = header + zlib.compress(b"A" * 2_000_000, 9)
    chunk = struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = path.read_bytes()
    at = png.index(b"IDAT") - 4 if kind == b"zTXt" else png.index(b"IHDR") + 21  # iCCP goes before the pixels
    path.write_bytes(png[:at] + chunk + png[at:])


SMALL = dict(
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


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="session")
def shapes_model(shapes_dir, feature_cache, tmp_path_factory):
    """A small OneNet trained on the shapes set (shared with the CLI tests)."""
    output = tmp_path_factory.mktemp("shapes_model")
    return train(
        CaptionTrainingArguments(
            data_dir=str(shapes_dir), output_dir=str(output), cache_dir=feature_cache, epochs=45, **SMALL
        )
    )


@pytest.fixture(scope="session")
def shapes_model_with_heads(shapes_model, shapes_dir, feature_cache, tmp_path_factory):
    """The shapes model with its tag and retrieval heads trained (second stage)."""
    from onenet_hf.training.heads import train_heads

    output = tmp_path_factory.mktemp("shapes_heads")
    return train_heads(shapes_head_arguments(shapes_model, shapes_dir, output, feature_cache))


def shapes_head_arguments(model_dir, data_dir, output_dir, cache_dir):
    """Second-stage arguments for the shapes model: short schedules for a tiny dataset."""
    from onenet_hf.training.heads import HeadTrainingArguments

    return HeadTrainingArguments(
        model_dir=str(model_dir),
        data_dir=str(data_dir),
        output_dir=str(output_dir),
        cache_dir=cache_dir,
        tag_epochs=40,
        retrieval_epochs=30,
        retrieval_batch_size=64,
        learning_rate=3e-3,
    )


@pytest.fixture(scope="session")
def shapes_net(shapes_model_with_heads):
    return OneNet.from_pretrained(shapes_model_with_heads)


@pytest.fixture(scope="module")
def tiny_net():
    """An untrained OneNet of a few units and a nine-token vocabulary: for what needs a model, not a good one."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer(["a red circle", "a blue square"], min_frequency=1)
    config = OneNetConfig(vocab_size=len(tokenizer), hidden_size=16, word_embedding_size=8, decoder_hidden_size=16)
    return OneNet(OneNetModel(config), OneNetProcessor(image_processor=OneNetImageProcessor(), tokenizer=tokenizer))
