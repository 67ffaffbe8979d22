"""The backbone's ImageNet knowledge as everyday words, for every use that speaks: which word each of the 1,000
classes names ("Egyptian cat" -> cat, "espresso" -> coffee, the 118 dog breeds -> dog), and how likely the frozen
classifier finds each word in a photo. Captions, tags and search read the same words and chances."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

import numpy as np
import torch

from ..errors import OneNetError
from ..utils.messages import shorten
from .word_vectors import content_words, normalize_word

ANIMAL_CLASSES = range(398)  # ImageNet's classes 0-397 are animals; 398-999 objects, food, plants and scenes


@cache
def imagenet_caption_words() -> tuple[str, ...]:
    """The everyday caption word of each ImageNet class, in classifier order ("" where no short word fits, e.g.
    "abacus"'s neighbours or clothing that describes a person rather than an object); curated by hand in
    `resources/imagenet_caption_words.tsv`."""
    text = resources.files("onenet_hf").joinpath("resources/imagenet_caption_words.tsv").read_text(encoding="utf-8")
    return tuple(line.split("\t")[2].strip() for line in text.splitlines()[1:])


@cache
def label_words() -> tuple[str, ...]:
    """The distinct caption words the classes name, sorted: the columns of `label_word_chances`."""
    return tuple(sorted(set(imagenet_caption_words()) - {""}))


@cache
def animal_label_words() -> frozenset[str]:
    """Label words named only by animal classes (dog, cat, horse...): the object words a Flickr8k decoder
    invents most, and the ones the classifier can vouch against."""
    named_by = {}
    for label, word in enumerate(imagenet_caption_words()):
        if word:
            named_by.setdefault(word, set()).add(label in ANIMAL_CLASSES)
    return frozenset(word for word, kinds in named_by.items() if kinds == {True})


@cache
def _class_word_matrix() -> torch.Tensor:
    """(1000, words) 0/1: which label word each class names."""
    columns = {word: column for column, word in enumerate(label_words())}
    matrix = torch.zeros(1000, len(columns))
    for label, word in enumerate(imagenet_caption_words()):
        if word:
            matrix[label, columns[word]] = 1.0
    return matrix


def label_word_chances(probabilities: torch.Tensor) -> torch.Tensor:
    """Chance (B, words) that the classifier names each label word: the summed softmax probabilities (B, 1000)
    of its classes (the dog breeds together vote for "dog")."""
    return probabilities.float() @ _class_word_matrix().to(probabilities.device)


def word_columns(words: Sequence[str]) -> np.ndarray:
    """Each word's column in `label_word_chances`, -1 for a word no class names."""
    columns = {word: column for column, word in enumerate(label_words())}
    return np.array([columns.get(word, -1) for word in words], dtype=np.int64)


EVIDENCE_FLOOR = 0.01  # added to a word's chance before the log: a photo without the word loses log(0.01) at most


@cache
def _columns_by_stem() -> dict[str, tuple[int, ...]]:
    """Label-word columns by stem (`normalize_word`), so "cats" in a query finds the column of "cat"."""
    from .word_vectors import normalize_word

    columns: dict[str, list[int]] = {}
    for column, word in enumerate(label_words()):
        columns.setdefault(normalize_word(word), []).append(column)
    return {stem: tuple(found) for stem, found in columns.items()}


def query_label_columns(text: str) -> list[int]:
    """The label-word columns a search text names ("a cat on a sofa" -> cat's), in order, each once."""
    from .word_vectors import content_words, normalize_word

    by_stem = _columns_by_stem()
    found = [column for word in content_words(text) for column in by_stem.get(normalize_word(word), ())]
    return list(dict.fromkeys(found))


def label_evidence(probabilities: torch.Tensor, columns: Sequence[int]) -> torch.Tensor:
    """How much the classifier backs a text's label words in each image (N,): the sum over the words of
    log((chance + floor) / (1 + floor)), 0 where it is sure and about -4.6 per word it finds no sign of (as
    ConSE and DeViSE let a classifier's labels vouch for a query's words)."""
    if not columns:
        return probabilities.new_zeros(len(probabilities))
    chances = label_word_chances(probabilities)[:, list(columns)]
    return torch.log((chances + EVIDENCE_FLOOR) / (1 + EVIDENCE_FLOOR)).sum(1)


@cache
def _imagenet_class_names() -> tuple[tuple[str, ...], ...]:
    """Every name of each of the 1,000 ImageNet classes, in classifier order (shipped as package data)."""
    text = resources.files("onenet_hf").joinpath("resources/imagenet_classes.tsv").read_text(encoding="utf-8")
    rows = [line.split("\t") for line in text.splitlines()[1:]]
    return tuple(tuple(name.strip() for name in names.split(",")) for _, _, names in rows)


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1,000 ImageNet class names in classifier order (first name of each synset)."""
    return tuple(names[0] for names in _imagenet_class_names())


@cache
def imagenet_label_stems() -> tuple[frozenset[str], ...]:
    """The stems (`normalize_word`) of the words in each ImageNet class's names, all synonyms: class 285
    "Egyptian cat" gives {"egyptian", "cat"}, so the label can vote for the tag "cat"."""
    return tuple(
        frozenset(normalize_word(word) for name in names for word in content_words(name))
        for names in _imagenet_class_names()
    )


@cache
def imagenet_classes_by_stem() -> dict[str, tuple[int, ...]]:
    """For each stem in some ImageNet class name, the classes that name it ("cat": 281 tabby, ... 285)."""
    classes: dict[str, list[int]] = {}
    for label, stems in enumerate(imagenet_label_stems()):
        for stem in sorted(stems):
            classes.setdefault(stem, []).append(label)
    return {stem: tuple(labels) for stem, labels in classes.items()}


def label_pairs(stems: Sequence[str]) -> torch.Tensor:
    """(2, pairs) ImageNet classes and places in `stems` where the class names that stem: the sparse matrix
    that turns the classifier's probabilities into the chance it names each word."""
    by_stem = imagenet_classes_by_stem()
    pairs = [(label, place) for place, stem in enumerate(stems) for label in by_stem.get(stem, ())]
    return torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).T


def label_chances(probabilities: torch.Tensor, pairs: torch.Tensor, size: int) -> torch.Tensor:
    """Chance (B, size) that the ImageNet classifier names each word: the summed probabilities (B, 1000) of the
    classes with the word in one of their names (`pairs` from `label_pairs`)."""
    classes, places = pairs.to(probabilities.device)
    return probabilities.new_zeros(len(probabilities), size).index_add_(1, places, probabilities[:, classes])


def imagenet_class_index(imagenet_class: int | str) -> int:
    """An ImageNet class given by index (e.g. 284) or name (e.g. "Siamese cat"), as its index."""
    labels = imagenet_labels()
    if isinstance(imagenet_class, str) and imagenet_class.strip().isdecimal() and imagenet_class.isascii():
        imagenet_class = int(imagenet_class)  # "284" from a command line is the index
    if isinstance(imagenet_class, str):
        names = [label.lower() for label in labels]
        if imagenet_class.lower() not in names:
            raise OneNetError(f"unknown ImageNet class {shorten(imagenet_class)}; give an index 0-999 or a class name")
        return names.index(imagenet_class.lower())
    if not 0 <= int(imagenet_class) < len(labels):
        raise OneNetError(f"ImageNet class index must be 0-999, got {imagenet_class}")
    return int(imagenet_class)


__all__ = [
    "imagenet_class_index",
    "imagenet_classes_by_stem",
    "imagenet_label_stems",
    "imagenet_labels",
    "label_chances",
    "label_pairs",
    "label_evidence",
    "query_label_columns",
    "animal_label_words",
    "imagenet_caption_words",
    "label_word_chances",
    "label_words",
    "word_columns",
]
