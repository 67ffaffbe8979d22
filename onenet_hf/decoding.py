"""Beam search and sampling over any decoder that exposes `decoder_step(tokens, state) -> (log_probs, state)`.

PyTorch and ONNX Runtime backends share this one implementation; state is a tuple of batch-first tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import OneNetError

StepFunction = Callable[[torch.Tensor, tuple[torch.Tensor, ...]], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


@dataclass(frozen=True)
class Hypothesis:
    """Generated token ids (without BOS/EOS) and their length-normalised log-probability."""

    token_ids: list[int]
    score: float


MAX_NO_REPEAT_NGRAM_SIZE = 24  # the longest caption the default generation config allows
MAX_BEAM_SIZE = 64  # one image at beam 64 decodes in under 2 s on 2 CPU cores; 2048 took 8 s and 256 MB more
# Sampled tokens with a log-probability below this count as this: exp() of the rest would give denormal floats,
# which CPUs process tens of times slower (40 ms of a 100-sample tagging), for a difference below 1e-34.
MIN_SAMPLED_LOG_PROB = -80.0


def check_beam_size(beam_size: int, maximum: int = MAX_BEAM_SIZE) -> None:
    """A beam of 1 (greedy) to `maximum` hypotheses: the cap bounds time and memory (both grow with the beam)."""
    if not isinstance(beam_size, int) or isinstance(beam_size, bool) or not 1 <= beam_size <= maximum:
        raise OneNetError(f"beam_size must be an integer from 1 to {maximum}, got {str(beam_size)[:20]}")


def check_no_repeat_ngram_size(size: int) -> None:
    """0 (off) or an n-gram length from 1 to MAX_NO_REPEAT_NGRAM_SIZE."""
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_NO_REPEAT_NGRAM_SIZE:
        raise OneNetError(
            f"no_repeat_ngram_size must be an integer from 0 (off) to {MAX_NO_REPEAT_NGRAM_SIZE}, got {str(size)[:20]}"
        )


def beam_search(
    step: StepFunction,
    state: tuple[torch.Tensor, ...],
    bos_token_id: int,
    eos_token_id: int,
    beam_size: int = 3,
    max_length: int = 24,
    length_penalty: float = 1.0,
    suppress_token_ids: tuple[int, ...] = (),
    no_repeat_ngram_size: int = 0,
    token_bias: torch.Tensor | None = None,
) -> list[Hypothesis]:
    """Best hypothesis per batch item (the first of `beam_candidates`, which documents the search); `beam_size=1`
    is greedy decoding."""
    candidates = beam_candidates(
        step, state, bos_token_id, eos_token_id, beam_size=beam_size, max_length=max_length,
        length_penalty=length_penalty, suppress_token_ids=suppress_token_ids,
        no_repeat_ngram_size=no_repeat_ngram_size, token_bias=token_bias,
    )  # fmt: skip
    return [hypotheses[0] for hypotheses in candidates]


@torch.no_grad()
def beam_candidates(
    step: StepFunction,
    state: tuple[torch.Tensor, ...],
    bos_token_id: int,
    eos_token_id: int,
    beam_size: int = 3,
    max_length: int = 24,
    length_penalty: float = 1.0,
    suppress_token_ids: tuple[int, ...] = (),
    no_repeat_ngram_size: int = 0,
    token_bias: torch.Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Each batch item's finished hypotheses, best first: the beam's n-best list (`beam_size` long at most).

    A hypothesis scores sum(log p) / (tokens + 1) ** length_penalty (the +1 counts EOS). As in fairseq, each
    step looks at the 2K best extensions: those ending in EOS (among the top K) become finished hypotheses,
    the best K others live on; an item stops once it has K finished ones. `suppress_token_ids` (e.g.
    padding, unknown-word and start tokens) are never generated. With `no_repeat_ngram_size=n` > 0 no hypothesis
    says an n-gram twice (as transformers' option of that name): this stops "a white shirt and a white shirt".
    `token_bias` (batch, vocab) is added to each item's log-probabilities at every step: it steers the search
    towards words, e.g. those the backbone's ImageNet labels name (`uses.caption.imagenet_token_bias`).
    """
    check_beam_size(beam_size)
    batch, k = state[0].shape[0], beam_size
    state = tuple(tensor.repeat_interleave(k, dim=0) for tensor in state)
    row_bias = None if token_bias is None else token_bias.float().repeat_interleave(k, dim=0)
    device = state[0].device
    tokens = torch.full((batch * k,), bos_token_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    offsets = torch.arange(batch, device=device).unsqueeze(1) * k
    for length in range(max_length + 1):
        log_probs, state = step(tokens, state)
        log_probs = log_probs.float() if row_bias is None else log_probs.float() + row_bias
        log_probs[:, list(suppress_token_ids)] = float("-inf")
        block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
        vocab = log_probs.shape[-1]
        if length == max_length:
            log_probs = torch.full_like(log_probs, float("-inf"))
            log_probs[:, eos_token_id] = 0.0
        candidates = (scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)
        beams, words = top_index // vocab, top_index % vocab
        ends = words == eos_token_id
        for item, rank in ends[:, :k].nonzero().tolist():
            if len(finished[item]) < k and top_scores[item, rank] > float("-inf"):
                ids = history[offsets[item, 0] + beams[item, rank]].tolist()
                normalised = top_scores[item, rank].item() / (len(ids) + 1) ** length_penalty
                finished[item].append(Hypothesis(ids, normalised))
        if all(len(hypotheses) >= k for hypotheses in finished):
            break
        scores, order = top_scores.masked_fill(ends, float("-inf")).topk(k, dim=1)
        source = (offsets + beams.gather(1, order)).view(-1)
        tokens = words.gather(1, order).view(-1)
        state = tuple(tensor[source] for tensor in state)
        history = torch.cat([history[source], tokens.unsqueeze(1)], dim=1)
    return [sorted(hypotheses, key=lambda h: -h.score) for hypotheses in finished]


def block_repeated_ngrams(log_probs: torch.Tensor, history: torch.Tensor, n: int) -> None:
    """Set to -inf, in place, each token that would complete an n-gram the row's history already contains."""
    if n < 1 or history.shape[1] < n:
        return
    if n == 1:
        log_probs.scatter_(1, history, float("-inf"))
        return
    windows = history.unfold(1, n, 1)  # (rows, positions, n): every n-gram said so far
    last = history[:, history.shape[1] - n + 1 :].unsqueeze(1)
    rows, positions = (windows[:, :, :-1] == last).all(-1).nonzero(as_tuple=True)
    log_probs[rows, windows[rows, positions, -1]] = float("-inf")


def generate_beams(
    backend, image_embeds: torch.Tensor, generation_config, token_bias: torch.Tensor | None = None
) -> list[Hypothesis]:
    """The best of `generate_candidates`: the one search behind `generate`, `onenet caption` and the pipeline."""
    return [hypotheses[0] for hypotheses in generate_candidates(backend, image_embeds, generation_config, token_bias)]


def generate_candidates(
    backend, image_embeds: torch.Tensor, generation_config, token_bias: torch.Tensor | None = None
) -> list[list[Hypothesis]]:
    """Each image's beam n-best list, searched as a `GenerationConfig` asks (num_beams, max_new_tokens counting EOS,
    length_penalty, suppress_tokens, no_repeat_ngram_size), steered by `token_bias` if given."""
    return beam_candidates(
        backend.decoder_step,
        backend.initial_state(image_embeds),
        bos_token_id=generation_config.bos_token_id,
        eos_token_id=generation_config.eos_token_id,
        beam_size=generation_config.num_beams,
        max_length=generation_config.max_new_tokens - 1,
        length_penalty=generation_config.length_penalty,
        suppress_token_ids=tuple(generation_config.suppress_tokens or ()),
        no_repeat_ngram_size=generation_config.no_repeat_ngram_size or 0,
        token_bias=token_bias,
    )


@dataclass(frozen=True)
class Samples:
    """Sequences drawn from a decoder, and along each one how likely it was to leave each token unsaid:
    1 - exp(token_log_misses) is the chance that the decoder says the token at some step of the sequence."""

    token_ids: torch.Tensor  # (batch, num_samples, max_length), EOS from the end of each sequence on
    token_log_misses: torch.Tensor  # (batch, num_samples, vocab): sum over the sequence's steps of log(1 - p(token))


@torch.no_grad()
def sample_sequences(
    step: StepFunction,
    state: tuple[torch.Tensor, ...],
    bos_token_id: int,
    eos_token_id: int,
    num_samples: int,
    max_length: int = 24,
    suppress_token_ids: tuple[int, ...] = (),
    seed: int = 0,
) -> Samples:
    """`num_samples` sequences per batch item drawn from the decoder (temperature 1), with each token's chance
    of being said along them (`Samples`), a smoother signal than whether the one drawn sequence said it.

    Every item uses the same uniform draws (from `seed`, by inverse-CDF sampling), so an item's samples are
    reproducible and do not depend on what else is in the batch.
    """
    if num_samples < 1 or max_length < 1:
        raise OneNetError(f"num_samples and max_length must be >= 1, got {num_samples} and {max_length}")
    batch = state[0].shape[0]
    device = state[0].device
    uniforms = torch.rand(num_samples, max_length, generator=torch.Generator().manual_seed(seed)).to(device)
    uniforms = uniforms.repeat(batch, 1)
    state = tuple(tensor.repeat_interleave(num_samples, dim=0) for tensor in state)
    rows = torch.arange(batch * num_samples, device=device)  # the sequences still being written
    tokens = torch.full((len(rows),), bos_token_id, dtype=torch.long, device=device)
    sequences = torch.full((len(rows), max_length), eos_token_id, dtype=torch.long, device=device)
    log_misses = None  # sum over steps of log(1 - p(token))
    for position in range(max_length):
        log_probs, state = step(tokens, state)
        probabilities = log_probs.float().clamp(min=MIN_SAMPLED_LOG_PROB).exp()
        probabilities[:, list(suppress_token_ids)] = 0.0
        if log_misses is None:
            log_misses = torch.zeros(len(rows), probabilities.shape[-1], device=device)
        log_misses[rows] += torch.log1p(-probabilities.clamp(max=1 - 1e-6))
        cumulative = probabilities.cumsum(-1)
        targets = uniforms[rows, position] * cumulative[:, -1]
        tokens = torch.searchsorted(cumulative, targets[:, None], right=True).squeeze(1)
        tokens = tokens.clamp(max=cumulative.shape[-1] - 1)
        sequences[rows, position] = tokens
        going_on = tokens != eos_token_id
        if not going_on.any():
            break
        rows, tokens = rows[going_on], tokens[going_on]
        state = tuple(tensor[going_on] for tensor in state)
    return Samples(sequences.view(batch, num_samples, max_length), log_misses.view(batch, num_samples, -1))


__all__ = [
    "MAX_BEAM_SIZE",
    "Hypothesis",
    "Samples",
    "beam_candidates",
    "beam_search",
    "check_beam_size",
    "check_no_repeat_ngram_size",
    "generate_beams",
    "generate_candidates",
    "sample_sequences",
]
