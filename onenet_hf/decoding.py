"""Beam search and sampling over any decoder that exposes `decoder_step(tokens, state) -> (log_probs, state)`.

PyTorch and ONNX Runtime backends share this one implementation; state is a tuple of batch-first tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import OneNetError
from .options import MAX_BEAM_SIZE, check_beam_size, check_no_repeat_ngram_size
from .options import MAX_NO_REPEAT_NGRAM_SIZE as MAX_NO_REPEAT_NGRAM_SIZE

StepFunction = Callable[[torch.Tensor, tuple[torch.Tensor, ...]], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


@dataclass(frozen=True)
class Hypothesis:
    """Generated token ids (without BOS/EOS) and their length-normalised log-probability."""

    token_ids: list[int]
    score: float


MAX_CONSTRAINTS = 3  # constraint sets per caption: each doubles the hypotheses searched (2 ** sets groups)
# Sampled tokens with a log-probability below this count as this: exp() of the rest would give denormal floats,
# which CPUs process tens of times slower (40 ms of a 100-sample tagging), for a difference below 1e-34.
MIN_SAMPLED_LOG_PROB = -80.0


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
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
    prefix_ids: Sequence[int] = (),
) -> list[list[Hypothesis]]:
    """Each batch item's finished hypotheses, best first: the beam's n-best list (`beam_size` long at most).

    A hypothesis scores sum(log p) / (tokens + 1) ** length_penalty (the +1 counts EOS). As in fairseq, each
    step looks at the 2K best extensions: those ending in EOS (among the top K) become finished hypotheses,
    the best K others live on; an item stops once it has K finished ones. `suppress_token_ids` (e.g.
    padding, unknown-word and start tokens) are never generated. With `no_repeat_ngram_size=n` > 0 no hypothesis
    says an n-gram twice (as transformers' option of that name): this stops "a white shirt and a white shirt".
    `token_bias` (batch, vocab) is added to each item's log-probabilities at every step: it steers the search
    towards or away from words (`uses.caption.imagenet_token_bias`).

    `constraints` (per item, a list of token-id sets) makes it constrained beam search (Anderson et al., EMNLP
    2017): a caption must say one token of each set. Hypotheses are grouped by which sets they have met, a beam
    of K in each group; finished hypotheses come from the group that met them all (from the group that met the
    most where none finished), so the decoder's language model places the words it is made to say.

    `prefix_ids` (a prompt, as BLIP's conditional captioning takes one) are read first, as if the decoder had
    said them: every hypothesis starts with them, and constraint sets they meet count as met. Scores, length
    and `max_length` count only the tokens after them.
    """
    check_beam_size(beam_size)
    batch, k = state[0].shape[0], beam_size
    constraint_bits, start_groups, groups = _constraint_bits(constraints, batch, state[0].device)
    device = state[0].device
    prefix = [int(token) for token in prefix_ids]
    tokens = torch.full((batch,), bos_token_id, dtype=torch.long, device=device)
    for token in prefix:
        _, state = step(tokens, state)
        tokens = torch.full((batch,), token, dtype=torch.long, device=device)
        if constraint_bits is not None and token < constraint_bits.shape[1]:
            start_groups = start_groups | constraint_bits[:, token]
    rows_per_item = groups * k
    state = tuple(tensor.repeat_interleave(rows_per_item, dim=0) for tensor in state)
    row_bias = None if token_bias is None else token_bias.float().repeat_interleave(rows_per_item, dim=0)
    tokens = tokens.repeat_interleave(rows_per_item)
    scores = torch.full((batch, groups, k), float("-inf"), device=device)
    scores[torch.arange(batch, device=device), start_groups, 0] = 0.0
    group_of_row = torch.arange(groups, device=device).repeat_interleave(k).expand(batch, -1)  # (batch, G * K)
    history = torch.tensor(prefix, dtype=torch.long, device=device).expand(batch * rows_per_item, -1)
    finished: list[list[list[Hypothesis]]] = [[[] for _ in range(groups)] for _ in range(batch)]
    offsets = torch.arange(batch, device=device).unsqueeze(1) * rows_per_item
    for length in range(max_length + 1):
        log_probs, state = step(tokens, state)
        log_probs = log_probs.float() if row_bias is None else log_probs.float() + row_bias
        log_probs[:, list(suppress_token_ids)] = float("-inf")
        block_repeated_ngrams(log_probs, history, no_repeat_ngram_size)
        vocab = log_probs.shape[-1]
        if length == max_length:
            log_probs = torch.full_like(log_probs, float("-inf"))
            log_probs[:, eos_token_id] = 0.0
        candidates = (scores.view(-1, 1) + log_probs).view(batch, rows_per_item, vocab)
        if constraint_bits is None:
            next_group = None
        else:  # the group a hypothesis moves to: the sets it met, with those its next token meets
            if constraint_bits.shape[1] < vocab:
                constraint_bits = F.pad(constraint_bits, (0, vocab - constraint_bits.shape[1]))
            next_group = group_of_row.unsqueeze(-1) | constraint_bits[:, :vocab].unsqueeze(1)
        survivors, sources, words_kept = [], [], []
        for group in range(groups):
            in_group = candidates if next_group is None else candidates.masked_fill(next_group != group, -torch.inf)
            top_scores, top_index = in_group.view(batch, -1).topk(min(2 * k, rows_per_item * vocab), dim=1)
            beams, words = top_index // vocab, top_index % vocab
            ends = words == eos_token_id
            for item, rank in ends[:, :k].nonzero().tolist():
                if len(finished[item][group]) < k and top_scores[item, rank] > float("-inf"):
                    ids = history[offsets[item, 0] + beams[item, rank]].tolist()
                    normalised = top_scores[item, rank].item() / (len(ids) - len(prefix) + 1) ** length_penalty
                    finished[item][group].append(Hypothesis(ids, normalised))
            kept_scores, order = top_scores.masked_fill(ends, float("-inf")).topk(k, dim=1)
            survivors.append(kept_scores)
            sources.append(offsets + beams.gather(1, order))
            words_kept.append(words.gather(1, order))
        if all(len(hypotheses[-1]) >= k for hypotheses in finished):
            break
        scores = torch.stack(survivors, dim=1)
        source = torch.cat(sources, dim=1).view(-1)
        tokens = torch.cat(words_kept, dim=1).view(-1)
        state = tuple(tensor[source] for tensor in state)
        history = torch.cat([history[source], tokens.unsqueeze(1)], dim=1)
    return [_best_group(hypotheses) for hypotheses in finished]


def _constraint_bits(
    constraints: Sequence[Sequence[Sequence[int]]] | None, batch: int, device: torch.device
) -> tuple[torch.Tensor | None, torch.Tensor, int]:
    """Per item and token, the bit mask of the constraint sets the token meets (batch, max token + 1); each item's
    starting group (the sets it lacks count as met); and the number of groups (2 ** the most sets an item has).
    Without constraints: no masks, group 0, one group."""
    if constraints is None or not any(constraints):
        return None, torch.zeros(batch, dtype=torch.long, device=device), 1
    if len(constraints) != batch:
        raise OneNetError(f"got constraints for {len(constraints)} items but {batch} images")
    most = max(len(sets) for sets in constraints)
    if most > MAX_CONSTRAINTS:
        raise OneNetError(f"at most {MAX_CONSTRAINTS} constraint sets per caption, got {most}")
    if any(not tokens for sets in constraints for tokens in sets):
        raise OneNetError("a constraint set is empty: give at least one token a caption may meet it with")
    size = 1 + max(token for sets in constraints for tokens in sets for token in tokens)
    bits = torch.zeros(batch, size, dtype=torch.long)
    for item, sets in enumerate(constraints):
        for number, tokens in enumerate(sets):
            bits[item, list(tokens)] |= 1 << number
    full = (1 << most) - 1
    start = torch.tensor([full ^ ((1 << len(sets)) - 1) for sets in constraints], dtype=torch.long)
    return bits.to(device), start.to(device), 1 << most


def _best_group(groups: list[list[Hypothesis]]) -> list[Hypothesis]:
    """The finished hypotheses, best first, of the group that met every constraint, or of the group that met the
    most constraints where it has none (a constraint the decoder could not fit in `max_length` tokens)."""

    def met(group: int) -> int:
        return bin(group).count("1")

    for group in sorted(range(len(groups)), key=lambda g: (-met(g), g)):
        if groups[group]:
            return sorted(groups[group], key=lambda h: -h.score)
    return []


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


def generate_beams(backend, image_embeds: torch.Tensor, generation_config, **search) -> list[Hypothesis]:
    """The best of `generate_candidates` (same options): the one search behind `generate`, `onenet caption` and
    the pipeline."""
    return [hypotheses[0] for hypotheses in generate_candidates(backend, image_embeds, generation_config, **search)]


def generate_candidates(
    backend,
    image_embeds: torch.Tensor,
    generation_config,
    token_bias: torch.Tensor | None = None,
    constraints: Sequence[Sequence[Sequence[int]]] | None = None,
    step: StepFunction | None = None,
    prefix_ids: Sequence[int] = (),
) -> list[list[Hypothesis]]:
    """Each image's beam n-best list, searched as a `GenerationConfig` asks (num_beams, max_new_tokens counting EOS,
    length_penalty, suppress_tokens, no_repeat_ngram_size), steered by `token_bias`, held to `constraints` and
    continuing `prefix_ids` if given; `step` replaces the backend's `decoder_step` (e.g. over an extended
    vocabulary)."""
    return beam_candidates(
        step or backend.decoder_step,
        backend.initial_state(image_embeds),
        bos_token_id=generation_config.bos_token_id,
        eos_token_id=generation_config.eos_token_id,
        beam_size=generation_config.num_beams,
        max_length=generation_config.max_new_tokens - 1,
        length_penalty=generation_config.length_penalty,
        suppress_token_ids=tuple(generation_config.suppress_tokens or ()),
        no_repeat_ngram_size=generation_config.no_repeat_ngram_size or 0,
        token_bias=token_bias,
        constraints=constraints,
        prefix_ids=prefix_ids,
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
