"""Beam search and sampling on a toy decoder whose distribution is known."""

from __future__ import annotations

import math

import pytest
import torch

from onenet_hf.decoding import MAX_BEAM_SIZE, MAX_NO_REPEAT_NGRAM_SIZE, beam_candidates, beam_search, sample_sequences
from onenet_hf.errors import OneNetError

BOS, EOS, A, B = 0, 1, 2, 3


def toy_step(tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """After BOS: A (0.6) or B (0.4). After A: EOS or B, even odds. After B: EOS (0.99). (EOS is fed back only to
    hypotheses already dead, as constrained search's empty groups are.)"""
    (position,) = state
    table = {
        BOS: [0.0, 0.0, 0.6, 0.4],
        EOS: [0.0, 1.0, 0.0, 0.0],
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


@pytest.mark.parametrize("beam_size", [0, MAX_BEAM_SIZE + 1, 100_000])
def test_beam_size_must_be_from_1_to_the_cap(beam_size):
    with pytest.raises(OneNetError, match=f"beam_size must be an integer from 1 to {MAX_BEAM_SIZE}, got {beam_size}"):
        beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=beam_size)


def looping_step(tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """A loop-prone decoder, "A B A B ..." for ever: after BOS or B comes A (0.9), after A comes B (0.9)."""
    rows = [[0.0, 0.05, 0.9, 0.05] if int(t) in (BOS, B) else [0.0, 0.05, 0.05, 0.9] for t in tokens]
    return torch.tensor(rows).log(), state


def test_no_repeat_ngram_size_stops_loops():
    state = (torch.zeros(2),)
    [looping, _] = beam_search(looping_step, state, BOS, EOS, beam_size=1, max_length=8)
    assert looping.token_ids == [A, B] * 4
    for n in (1, 2, 3):
        [best, _] = beam_search(looping_step, state, BOS, EOS, beam_size=1, max_length=8, no_repeat_ngram_size=n)
        ngrams = [tuple(best.token_ids[i : i + n]) for i in range(len(best.token_ids) - n + 1)]
        assert len(set(ngrams)) == len(ngrams), (n, best.token_ids)
        assert best.token_ids[: n + 1] == [A, B, A, B][: n + 1]  # what is not a repeat is kept


@pytest.mark.parametrize("size", [-1, MAX_NO_REPEAT_NGRAM_SIZE + 1, 2.0])
def test_no_repeat_ngram_size_is_checked(size):
    from onenet_hf.decoding import check_no_repeat_ngram_size

    with pytest.raises(OneNetError, match="no_repeat_ngram_size must be an integer"):
        check_no_repeat_ngram_size(size)


def test_a_token_bias_steers_only_its_own_item():
    bias = torch.zeros(2, 4)
    bias[0, B] = 0.5  # greedy item 0 now prefers B (0.4 * e^0.5 > 0.6); item 1 is left alone
    first, second = beam_search(toy_step, (torch.zeros(2),), BOS, EOS, beam_size=1, max_length=5, token_bias=bias)
    assert first.token_ids == [B] and second.token_ids == [A]
    assert first.score == pytest.approx((math.log(0.4) + 0.5 + math.log(0.99)) / 2)


def test_a_token_bias_follows_its_item_through_every_beam():
    bias = torch.zeros(2, 4)
    bias[0, A] = 5.0  # item 0 now ends "A"; item 1, unbiased, keeps the beam's answer "B"
    first, second = beam_search(toy_step, (torch.zeros(2),), BOS, EOS, beam_size=2, max_length=5, token_bias=bias)
    assert first.token_ids == [A] and second.token_ids == [B]


def test_suppressed_tokens_are_never_generated():
    [best] = beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=1, max_length=5, suppress_token_ids=(A,))
    assert best.token_ids == [B]


def test_samples_follow_the_decoder_distribution_and_end_with_eos():
    [samples] = sample_sequences(toy_step, (torch.zeros(1),), BOS, EOS, num_samples=4000, max_length=6).token_ids
    assert samples.shape == (4000, 6)
    assert float((samples[:, 0] == A).float().mean()) == pytest.approx(0.6, abs=0.03)
    assert float(((samples[:, 0] == A) & (samples[:, 1] == EOS)).float().mean()) == pytest.approx(0.3, abs=0.03)
    ended = torch.cumsum(samples == EOS, dim=1) > 0
    assert bool((samples[ended] == EOS).all())  # nothing but EOS once a sequence has ended
    assert bool(ended[:, -1].all())


def test_sampling_never_draws_suppressed_tokens():
    [samples] = sample_sequences(toy_step, (torch.zeros(1),), BOS, EOS, 500, 4, suppress_token_ids=(A,)).token_ids
    assert not (samples == A).any() and (samples[:, 0] == B).all()


def item_step(tokens: torch.Tensor, state: tuple[torch.Tensor, ...]):
    """Each batch item has its own odds of A after BOS (its state); then EOS."""
    (odds,) = state
    first = torch.stack([torch.zeros_like(odds), torch.zeros_like(odds), odds, 1 - odds], dim=1)
    after = torch.tensor([0.0, 1.0, 0.0, 0.0]).expand(len(tokens), -1)
    probs = torch.where((tokens == BOS)[:, None], first, after) + 1e-12
    return probs.log(), state


def test_an_items_samples_are_reproducible_and_do_not_depend_on_the_batch():
    alone = sample_sequences(item_step, (torch.tensor([0.3]),), BOS, EOS, 200, max_length=3).token_ids
    batched = sample_sequences(item_step, (torch.tensor([0.9, 0.3, 0.5]),), BOS, EOS, 200, max_length=3).token_ids
    assert torch.equal(alone[0], batched[1])
    other_seed = sample_sequences(item_step, (torch.tensor([0.3]),), BOS, EOS, 200, max_length=3, seed=1).token_ids
    assert not torch.equal(alone, other_seed)
    assert float((batched[0, :, 0] == A).float().mean()) > float((batched[1, :, 0] == A).float().mean())


def test_token_chances_follow_each_sampled_sequence():
    samples = sample_sequences(toy_step, (torch.zeros(1),), BOS, EOS, num_samples=50, max_length=6)
    ids, chances = samples.token_ids[0], -torch.expm1(samples.token_log_misses[0])
    said_a_then_eos = [i for i in range(50) if ids[i, 0] == A and ids[i, 1] == EOS]
    assert said_a_then_eos  # p = 0.3: some of 50 samples
    # steps: after BOS (A 0.6, B 0.4), after A (EOS 0.5, B 0.5)
    expected = torch.tensor([0.0, 0.5, 0.6, 1 - 0.6 * 0.5])
    assert torch.allclose(chances[said_a_then_eos[0]], expected, atol=1e-5)
    assert bool(((chances >= 0) & (chances <= 1)).all())


def test_num_samples_must_be_positive():
    with pytest.raises(OneNetError, match="num_samples and max_length must be >= 1"):
        sample_sequences(toy_step, (torch.zeros(1),), BOS, EOS, num_samples=0)


def test_caption_diversity_counts_captions_with_a_repeated_word_pair_and_distinct_words():
    from onenet_hf.evaluation import caption_diversity

    captions = ["a dog and a dog and a cat", "a dog runs", "A white shirt and a white shirt", "dog dog"]
    assert caption_diversity(captions) == {"repeated_bigram_%": 50.0, "distinct_words": 7.0}


def test_a_constraint_makes_the_search_say_an_unlikely_token_and_none_changes_nothing():
    free = beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=5)
    assert beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=5, constraints=[[]]) == free
    [best] = beam_search(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=5)
    assert best.token_ids == [B]  # free, the beam prefers B alone
    [held] = beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=5, constraints=[[(A,)]])
    assert all(A in hypothesis.token_ids for hypothesis in held)
    assert held[0].token_ids == [A, B]  # per token, A B EOS (0.6 * 0.5 * 0.99 over 3) beats A EOS (0.3 over 2)
    assert held[0].score == pytest.approx(math.log(0.6 * 0.5 * 0.99) / 3)


def test_each_item_keeps_its_own_constraints_and_two_sets_must_both_be_met():
    both, one, free = beam_candidates(
        toy_step, (torch.zeros(3),), BOS, EOS, beam_size=2, max_length=5, constraints=[[(A,), (B,)], [(A,)], []]
    )
    assert set(both[0].token_ids) >= {A, B}
    assert one[0].token_ids == [A, B]  # as with the same one constraint alone
    assert free  # unconstrained: B EOS and A B EOS finish (A EOS ties A B at the first step)


def test_a_constraint_that_cannot_be_met_in_time_falls_back_to_the_best_unmet_hypothesis():
    [held] = beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=0, constraints=[[(A,)]])
    assert held and held[0].token_ids == []


def test_constraint_errors_name_the_problem():
    with pytest.raises(OneNetError, match="constraint set is empty"):
        beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, constraints=[[()]])
    with pytest.raises(OneNetError, match="at most 3 constraint sets"):
        beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, constraints=[[(A,)] * 4])
    with pytest.raises(OneNetError, match="constraints for 2 items but 1"):
        beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, constraints=[[(A,)], [(B,)]])


def test_a_prefix_is_read_first_and_only_the_continuation_is_scored():
    [hypotheses] = beam_candidates(toy_step, (torch.zeros(1),), BOS, EOS, beam_size=2, max_length=5, prefix_ids=[A])
    assert all(h.token_ids[0] == A for h in hypotheses)  # every hypothesis starts with the prefix
    assert hypotheses[0].token_ids == [A, B]  # after A: B then EOS (0.5 * 0.99), per continuation token
    assert hypotheses[0].score == pytest.approx(math.log(0.5 * 0.99) / 2)  # B and EOS: two tokens, not three
    [[looping]] = beam_candidates(
        looping_step, (torch.zeros(1),), BOS, EOS, beam_size=1, max_length=8, no_repeat_ngram_size=1, prefix_ids=[A]
    )
    assert looping.token_ids == [A, B]  # the prefix's A counts as said: the decoder may not say it again
