"""Beam search on a toy decoder whose best sequence is known."""

from __future__ import annotations

import math

import pytest
import torch

from onenet_hf.search import beam_search

BOS, EOS, A, B = 0, 1, 2, 3


def toy_step(tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """After BOS: A (0.6) or B (0.4). After A: EOS or B, even odds. After B: EOS (0.99)."""
    (position,) = state
    table = {
        BOS: [0.0, 0.0, 0.6, 0.4],
        A: [0.0, 0.5, 0.0, 0.5],
        B: [0.0, 0.99, 0.005, 0.005],
    }
    probs = torch.tensor([table[int(t)] for t in tokens]) + 1e-12
    return probs.log(), (position + 1,)


def test_greedy_takes_the_locally_best_word():
    [best] = beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=1, max_length=5)
    assert best.token_ids == [A]
    assert best.score == pytest.approx(math.log(0.6 * 0.5) / 2)


def test_beam_finds_the_more_likely_sequence():
    [best] = beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=5)
    assert best.token_ids == [B]  # 0.4 * 0.99 beats 0.6 * 0.5
    assert best.score == pytest.approx(math.log(0.4 * 0.99) / 2)


def test_batch_items_are_independent_and_max_length_is_respected():
    results = beam_search(toy_step, (torch.zeros(3),), BOS, EOS, beam_size=3, max_length=1)
    assert len(results) == 3 and all(len(r.token_ids) <= 1 for r in results)
    assert results[0] == results[1] == results[2]


def test_length_penalty_zero_prefers_short_hypotheses():
    [best] = beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=3, max_length=5, length_penalty=0.0)
    assert best.token_ids == [B]


def test_beam_size_must_be_positive():
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=0)


def test_suppressed_tokens_are_never_generated():
    [best] = beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=1, max_length=5, suppress_token_ids=(A,))
    assert best.token_ids == [B]
