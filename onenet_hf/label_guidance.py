"""Captions that use the backbone's ImageNet knowledge: the words of labels the classifier is sure of must appear
(constrained beam search, Anderson et al. 2017), label words the caption vocabulary lacks borrow the decoder
weights of their nearest known label word (DCC, Hendricks et al. 2016), and animals the classifier sees no sign of
are penalised (the Flickr8k decoder's invented dogs).

The caption vocabulary is extended the same way for every call: token id `vocab_size + i` is the i-th of
`novel_label_words(tokens)`, so `generate`, the processor's decoding and every backend agree on the words."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from .decoding import Hypothesis, StepFunction, generate_beams
from .language.label_words import animal_label_words, label_word_chances, label_words, word_columns
from .language.word_vectors import glove_vectors
from .options import LABEL_THRESHOLD, check_label_threshold

MAX_LABEL_CONSTRAINTS = 1  # label words put in one caption (each doubles the hypotheses searched)
ABSENT_ANIMAL_WEIGHT = 1.0  # x log((chance + ABSENT_FLOOR) / (1 + ABSENT_FLOOR)), added to an animal word's log-prob
ABSENT_FLOOR = 0.01


@cache
def novel_label_words(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Label words the caption vocabulary `tokens` lacks, in the fixed order that gives their extended token ids;
    none where the vocabulary knows no label word for them to borrow from (a toy vocabulary)."""
    known = set(tokens)
    if not any(word in known and word in glove_vectors() for word in label_words()):
        return ()
    return tuple(word for word in label_words() if word not in known and word in glove_vectors())


@cache
def proxy_token_ids(tokens: tuple[str, ...]) -> tuple[int, ...]:
    """For each novel label word, the token id of the known label word nearest to it in GloVe: the decoder scores
    and reads the novel word as that word ("giraffe" as "elephant")."""
    novel = novel_label_words(tokens)
    if not novel:
        return ()
    ids = {token: i for i, token in enumerate(tokens)}
    known = [word for word in label_words() if word in ids and word in glove_vectors()]
    glove = glove_vectors()
    known_vectors = glove.vectors[glove.ids(known)]
    known_vectors = known_vectors / np.linalg.norm(known_vectors, axis=1, keepdims=True)
    nearest = (glove.vectors[glove.ids(novel)] @ known_vectors.T).argmax(1)
    return tuple(ids[known[column]] for column in nearest)


def vocabulary_tokens(tokenizer) -> tuple[str, ...]:
    """The caption tokenizer's tokens in id order: the vocabulary label guidance extends."""
    return tuple(tokenizer.convert_ids_to_tokens(range(len(tokenizer))))


def extended_words(tokens: Sequence[str]) -> tuple[str, ...]:
    """The caption vocabulary followed by its novel label words: what every extended token id decodes to."""
    return (*tokens, *novel_label_words(tuple(tokens)))


def extended_step(step: StepFunction, tokens: tuple[str, ...]) -> StepFunction:
    """`step` over the extended vocabulary: a novel word is read as its proxy, and scored as its proxy is."""
    proxies = torch.tensor(proxy_token_ids(tokens), dtype=torch.long)
    size = len(tokens)
    if not len(proxies):
        return step

    def run(input_ids: torch.Tensor, state: tuple[torch.Tensor, ...]):
        novel = input_ids >= size
        known_ids = torch.where(novel, proxies.to(input_ids.device)[(input_ids - size).clamp(min=0)], input_ids)
        log_probs, state = step(known_ids, state)
        return torch.cat([log_probs, log_probs[:, proxies.to(log_probs.device)]], dim=1), state

    return run


@dataclass(frozen=True)
class LabelGuidance:
    """What the classifier's words do to one batch's beam search: the word sets each caption must say (extended
    token ids), a bias (batch, extended vocabulary) added to every step, and each image's chosen words."""

    constraints: list[list[tuple[int, ...]]]
    token_bias: torch.Tensor
    words: list[list[str]]


# Young animals a caption says instead of the label word: they are penalised with it.
YOUNG = {"dog": ("puppy", "puppies"), "cat": ("kitten", "kittens"), "horse": ("pony", "foal"), "sheep": ("lamb",)}


def _forms(word: str, ids: dict[str, int]) -> tuple[int, ...]:
    """The extended token ids of a word and of its plural where the vocabulary has it ("dog", "dogs")."""
    return tuple(ids[form] for form in (word, word + "s", word + "es") if form in ids)


def _animal_forms(word: str, ids: dict[str, int]) -> tuple[int, ...]:
    """`_forms` of an animal word and of its young ("dog": dog, dogs, puppy, puppies)."""
    return _forms(word, ids) + tuple(ids[form] for form in YOUNG.get(word, ()) if form in ids)


def label_guidance(
    tokens: Sequence[str],
    probabilities: torch.Tensor,
    threshold: float = LABEL_THRESHOLD,
    max_constraints: int = MAX_LABEL_CONSTRAINTS,
    absent_weight: float = ABSENT_ANIMAL_WEIGHT,
) -> LabelGuidance:
    """Constraints and bias for a batch from the classifier's softmax `probabilities` (B, 1000): up to
    `max_constraints` label words whose chance reaches `threshold` must be said; novel label words stay unsaid
    unless constrained (then their proxy is, so "giraffe" takes "elephant"'s place rather than joining it); each
    animal word is penalised by `absent_weight` x log((chance + floor) / (1 + floor))."""
    tokens = tuple(tokens)
    words = extended_words(tokens)
    ids = {word: i for i, word in enumerate(words)}
    size, proxies = len(tokens), proxy_token_ids(tokens)
    chances = label_word_chances(probabilities).cpu()
    bias = torch.zeros(len(probabilities), len(words))
    bias[:, size:] = -math.inf
    animals = [word for word in sorted(animal_label_words()) if word in ids and ids[word] < size]
    if absent_weight and animals:
        penalty = absent_weight * torch.log((chances[:, word_columns(animals)] + ABSENT_FLOOR) / (1 + ABSENT_FLOOR))
        for column, word in enumerate(animals):
            bias[:, list(_animal_forms(word, ids))] = penalty[:, column : column + 1]
    constraints, chosen = [], []
    names = label_words()
    for item, row in enumerate(chances):
        order = [column for column in row.argsort(descending=True).tolist() if row[column] >= threshold]
        kept = [names[column] for column in order if names[column] in ids][:max_constraints]
        sets = []
        for word in kept:
            forms = _forms(word, ids)
            sets.append(forms)
            bias[item, list(forms)] = 0.0
            if ids[word] >= size:
                bias[item, proxies[ids[word] - size]] = -math.inf
        constraints.append(sets)
        chosen.append(kept)
    return LabelGuidance(constraints, bias, chosen)


def guided_beams(
    backend,
    tokens: Sequence[str],
    image_embeds: torch.Tensor,
    probabilities: torch.Tensor,
    generation_config,
    threshold: float = LABEL_THRESHOLD,
    token_bias: torch.Tensor | None = None,
    prefix_ids: Sequence[int] = (),
) -> list[Hypothesis]:
    """Each image's best caption (extended token ids) by the generation config's beam search, guided by the
    classifier's `probabilities` (B, 1000) as `label_guidance` says; `token_bias` (B, vocab) is added too, and
    the captions continue `prefix_ids` if given."""
    tokens = tuple(tokens)
    guidance = label_guidance(tokens, probabilities, threshold)
    bias = guidance.token_bias.to(image_embeds.device)
    if token_bias is not None:
        bias[:, : token_bias.shape[1]] += token_bias.float()
    step = extended_step(backend.decoder_step, tokens)
    return generate_beams(
        backend, image_embeds, generation_config, token_bias=bias, constraints=guidance.constraints, step=step,
        prefix_ids=prefix_ids,
    )  # fmt: skip


__all__ = [
    "LABEL_THRESHOLD",
    "LabelGuidance",
    "check_label_threshold",
    "extended_step",
    "extended_words",
    "guided_beams",
    "label_guidance",
    "novel_label_words",
    "proxy_token_ids",
    "vocabulary_tokens",
]
