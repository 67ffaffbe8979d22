"""Use 6: describe to search, text -> gallery images.

Methods:
- `embed` (default): the frozen MiniLM sentence embedding, projected into the learned text-image space,
  finds the nearest images; the caption decoder then re-ranks the top `config.rerank_top_k` by how likely
  it finds the description for each image.
- `invert`: freeze the network and optimise image representations (several random restarts in one batch)
  so the caption decoder gives the description high likelihood; the best one searches the gallery.
- `glove`: the tutorial's way: the mean GloVe vector of the content words, in the tag head's space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..gallery import GalleryIndex, ImageMatch, top_k_scores
from ..messages import shorten
from ..text_encoder import MAX_TEXT_CHARACTERS, encode_sentences
from ..word_vectors import UnknownWordError, glove_vectors
from .tag import tag_word_features
from .words import check_k

SEARCH_METHODS = ("embed", "invert", "glove")


def check_description(text: str) -> str:
    """The description, stripped; empty or whitespace-only text is an error, long text is cut."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the description is empty: describe the image you are looking for in a few words")
    return text.strip()[:MAX_TEXT_CHARACTERS]


def description_token_ids(processor, text: str, max_length: int) -> list[int]:
    """[BOS] words [EOS] of a description; an error when no word is in the caption vocabulary."""
    ids = processor.tokenizer(check_description(text))["input_ids"]
    words = ids[1:-1][:max_length]
    if not [i for i in words if i != processor.tokenizer.unk_token_id]:
        raise UnknownWordError(f"none of the words of {shorten(text)} are in the caption vocabulary")
    return ids[:1] + words + ids[-1:]


def description_log_likelihood(model, token_ids: Sequence[Sequence[int]], image_embeds: torch.Tensor) -> torch.Tensor:
    """Sum of the decoder's token log-probabilities of each description (after [BOS]) given its image vector."""
    width = max(len(ids) for ids in token_ids)
    padded = torch.tensor([list(ids) + [-100] * (width - len(ids)) for ids in token_ids], device=image_embeds.device)
    inputs, labels = padded[:, :-1].clamp(min=0), padded[:, 1:]
    log_probs = model(input_ids=inputs, image_embeds=image_embeds).logits.float().log_softmax(-1)
    token_log_probs = log_probs.gather(2, labels.clamp(min=0)[..., None])[..., 0]
    return (token_log_probs * (labels != -100)).sum(1)


def invert_descriptions(
    model,
    token_ids: Sequence[Sequence[int]],
    restarts: int = 8,
    steps: int = 40,
    learning_rate: float = 0.1,
    seed: int = 0,
) -> torch.Tensor:
    """Image representations (Q, hidden) that make the decoder likely to say each description.

    The optimised variable passes through the model's final LayerNorm, so results look like real
    representations; of the restarts, the one with the highest likelihood is kept.
    """
    generator = torch.Generator().manual_seed(seed)
    repeated = [ids for ids in token_ids for _ in range(restarts)]
    was_training = model.training
    model.eval()
    with torch.inference_mode(False), torch.enable_grad():  # callers may be in inference mode
        start = torch.randn(len(repeated), model.config.hidden_size, generator=generator)
        variable = start.to(model.device).requires_grad_(True)
        optimizer = torch.optim.Adam([variable], lr=learning_rate)
        for _ in range(steps):
            loss = -description_log_likelihood(model, repeated, model.image_norm(variable)).sum()
            (variable.grad,) = torch.autograd.grad(loss, [variable])  # the network's weights stay untouched
            optimizer.step()
    model.train(was_training)
    with torch.inference_mode():
        vectors = model.image_norm(variable.detach())
        likelihood = description_log_likelihood(model, repeated, vectors).view(len(token_ids), restarts)
        best = likelihood.argmax(1)
        return vectors.view(len(token_ids), restarts, -1)[torch.arange(len(token_ids)), best]


@torch.inference_mode()
def glove_description_embeds(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Tag-space vectors of descriptions: the mean tag-head word features of their GloVe content words."""
    glove, rows = glove_vectors(), []
    for text in texts:
        words = [w for w in glove.query_words(check_description(text)) if w in glove]
        if not words:
            raise UnknownWordError(f"none of the words of {shorten(text)} are in GloVe's vocabulary")
        rows.append(tag_word_features(model, tokenizer, words).mean(0))
    return model.get_tag_word_embeds(torch.stack(rows))


@torch.inference_mode()
def decoder_rerank_scores(
    model, token_ids: Sequence[int], image_embeds: torch.Tensor, cosines: torch.Tensor
) -> torch.Tensor:
    """Re-ranking score of candidate images for one description: scaled joint-space cosine + weight * log p."""
    likelihood = description_log_likelihood(model, [token_ids] * len(image_embeds), image_embeds)
    return model.retrieval_head.logit_scale.exp() * cosines + model.config.rerank_weight * likelihood


@torch.inference_mode()
def search_by_description(
    model, processor, index: GalleryIndex, text: str, k: int = 5, method: str = "embed", rerank: bool = True
) -> list[ImageMatch]:
    """The k gallery images that best match a description (a sentence, a few words, or one word)."""
    check_k(k)
    text = check_description(text)
    k = min(k, len(index))
    if method == "embed":
        query = model.get_retrieval_text_embeds(encode_sentences([text], model.config.text_encoder_name))
        scores = np.asarray(index.retrieval_embeds, dtype=np.float32) @ query[0].cpu().numpy()
        candidates = top_k_scores(scores, max(k, model.config.rerank_top_k) if rerank else k)
        if rerank:
            try:
                ids = description_token_ids(processor, text, model.config.max_caption_length)
            except UnknownWordError:  # nothing the decoder knows: keep the joint-space order
                return index.matches(candidates[:k])
            rows = [row for row, _ in candidates]
            images = torch.from_numpy(np.array(index.image_embeds[rows], dtype=np.float32)).to(model.device)
            cosines = torch.tensor([cosine for _, cosine in candidates], device=model.device)
            scores = decoder_rerank_scores(model, ids, images, cosines)
            candidates = [candidates[i] for i in scores.argsort(descending=True).tolist()]
        return index.matches(candidates[:k])
    if method == "invert":
        ids = description_token_ids(processor, text, model.config.max_caption_length)
        vector = invert_descriptions(model, [ids])[0].cpu().numpy()
        return index.matches(index.nearest(vector, k)[0])
    if method == "glove":
        query = glove_description_embeds(model, processor.tokenizer, [text])[0]
        return index.matches(top_k_scores(np.asarray(index.tag_embeds, dtype=np.float32) @ query.cpu().numpy(), k))
    raise ValueError(f"unknown search method {shorten(method)}; choose one of {SEARCH_METHODS}")


__all__ = [
    "SEARCH_METHODS",
    "description_log_likelihood",
    "description_token_ids",
    "glove_description_embeds",
    "invert_descriptions",
    "decoder_rerank_scores",
    "search_by_description",
]
