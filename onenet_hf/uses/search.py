"""Use 6, describe to search: a text finds gallery images (`OneNet.search`, `onenet search`).

Methods (`SEARCH_METHODS`):
- `reranked` (default): `retrieval`, then the caption decoder re-ranks the top `config.rerank_top_k` images by
  how likely it finds the text for each (`OneNetModel.get_rerank_scores`).
- `retrieval`: the frozen MiniLM sentence embedding and the images' pooled features meet in the retrieval
  head's space; nearest by cosine.
- `invert`: image representations optimised so the decoder says the text (`OneNetModel.invert_captions`);
  the best one searches the gallery by representation.
- `glove`: the mean tag-head word features of the text's GloVe words, against the images' tag-space vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import OneNetError
from ..gallery.index import GalleryIndex, ImageMatch
from ..language.label_words import label_evidence, query_label_columns
from ..language.text_encoder import encode_sentences
from ..language.word_vectors import UnknownWordError, glove_vectors
from ..options import SEARCH_METHODS, check_text_length
from ..utils.messages import shorten
from ..utils.ranking import check_k
from .tag import tag_word_features

RENAMED_METHODS = {"embed": "reranked", "joint": "retrieval"}  # names before version 0.2


def check_method(method: str) -> None:
    """A search method of SEARCH_METHODS; an old name says its new one."""
    if method not in SEARCH_METHODS:
        renamed = f" (`{method}` is now `{RENAMED_METHODS[method]}`)" if method in RENAMED_METHODS else ""
        raise OneNetError(f"unknown search method {shorten(method)}{renamed}; choose one of {SEARCH_METHODS}")


def check_text(text: str) -> str:
    """The text, stripped; empty text, or text without a letter or digit in any script, is an error (the
    retrieval encoder would still rank the gallery by it), and so is text over `MAX_TEXT_CHARACTERS`."""
    if not isinstance(text, str) or not text.strip():
        raise OneNetError("the text is empty: describe the image you are looking for in a few words")
    if not any(character.isalnum() for character in text):
        raise OneNetError(f"{shorten(text)} has no words: describe the image you are looking for in a few words")
    check_text_length(text, "text")
    return text.strip()


def rerank_token_ids(processor, text: str, max_length: int) -> list[int] | None:
    """The text's token ids for re-ranking, or None when the decoder knows none of its words: then the
    retrieval order stands (search and evaluation alike)."""
    try:
        return text_token_ids(processor, text, max_length)
    except UnknownWordError:
        return None


def text_token_ids(processor, text: str, max_length: int) -> list[int]:
    """[BOS] words [EOS] of a text, as the decoder reads it; an error when no word is in the caption vocabulary."""
    ids = processor.tokenizer(check_text(text))["input_ids"]
    words = ids[1:-1][:max_length]
    if not [i for i in words if i != processor.tokenizer.unk_token_id]:
        raise UnknownWordError(f"none of the words of {shorten(text)} are in the caption vocabulary")
    return ids[:1] + words + ids[-1:]


@torch.inference_mode()
def glove_text_embeds(model, tokenizer, texts: Sequence[str]) -> torch.Tensor:
    """Tag-space vectors of texts: the mean tag-head word features of their GloVe content words."""
    glove, rows = glove_vectors(), []
    for text in texts:
        words = [w for w in glove.query_words(check_text(text)) if w in glove]
        if not words:
            raise UnknownWordError(f"none of the words of {shorten(text)} are in GloVe's vocabulary")
        rows.append(tag_word_features(model, tokenizer, words).mean(0))
    return model.get_tag_word_embeds(torch.stack(rows))


@torch.inference_mode()
def rerank(
    model, token_ids: Sequence[int], cosines: torch.Tensor, image_embeds, top: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `top` images of N with the best retrieval cosines (N,) for one text, re-scored by the decoder
    (`get_rerank_scores`): their rows and scores, best first. `image_embeds` holds the N image representations
    (a tensor or an array, e.g. a gallery's memory-mapped one; only the `top` rows are read).

    Search and `onenet evaluate --task retrieval` both rank through this function."""
    rows = cosines.topk(min(top, len(cosines))).indices
    candidates = torch.as_tensor(np.asarray(image_embeds[rows.cpu().numpy()], dtype=np.float32))
    scores = model.get_rerank_scores(token_ids, candidates.to(model.device), cosines[rows].to(model.device)).cpu()
    order = scores.argsort(descending=True, stable=True)
    return rows[order], scores[order]


# x label evidence, added to retrieval cosines and to the decoder's re-ranking scores: chosen on coco-mini-dev, the
# largest that kept Flickr8k dev's text->image R@1 from falling (bench/results/guidance)
RETRIEVAL_EVIDENCE_WEIGHT = 0.05
RERANK_EVIDENCE_WEIGHT = 4.0


@torch.inference_mode()
def with_label_evidence(
    model, text: str, rows: torch.Tensor, scores: torch.Tensor, pooled_features, reranked: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidate rows re-ordered after adding how much the backbone's classifier backs the text's label words in
    each (`label_evidence`): "a cat" ranks the cat above the espresso that the retrieval head confuses with it.
    Only the candidates' pooled features are read; a text naming no label word keeps its order."""
    columns = query_label_columns(text)
    if not columns:
        return rows, scores
    pooled = torch.as_tensor(np.asarray(pooled_features[rows.cpu().numpy()], dtype=np.float32)).to(model.device)
    evidence = label_evidence(model.get_imagenet_logits(pooled).softmax(-1), columns).cpu().double()
    weight = RERANK_EVIDENCE_WEIGHT if reranked else RETRIEVAL_EVIDENCE_WEIGHT
    scores = scores.double() + weight * evidence
    order = scores.argsort(descending=True, stable=True)
    return rows[order], scores[order]


@torch.inference_mode()
def search(model, processor, index: GalleryIndex, text: str, k: int = 5, method: str = "reranked") -> list[ImageMatch]:
    """The k gallery images that best match a text (a sentence, a few words, or one word), best first."""
    check_k(k)
    text = check_text(text)
    check_method(method)
    k = min(k, len(index))
    if method in ("reranked", "retrieval"):
        query = model.get_retrieval_text_embeds(encode_sentences([text], model.config.text_encoder_name))
        ids = rerank_token_ids(processor, text, model.config.max_caption_length) if method == "reranked" else None
        # the candidates: the gallery's nearest by retrieval cosine (its ANN files when large), read by row
        pairs = index.nearest(query[0].cpu().numpy(), max(k, model.config.rerank_top_k), array="retrieval_embeds")[0]
        found = torch.tensor([row for row, _ in pairs], dtype=torch.long)
        cosines = torch.tensor([cosine for _, cosine in pairs], dtype=torch.float32)
        candidates, scores = torch.arange(len(pairs)), cosines.double()
        if ids is not None:
            candidates, scores = rerank(model, ids, cosines, index.rows("image_embeds", found), len(pairs))
        pooled = index.rows("pooled_features", found)
        candidates, scores = with_label_evidence(model, text, candidates, scores, pooled, ids is not None)
        rows = found[candidates[:k]].tolist()
        return index.matches(list(zip(rows, scores[:k].tolist(), strict=True)), dict(pairs))
    if method == "invert":
        ids = text_token_ids(processor, text, model.config.max_caption_length)
        vector = model.invert_captions([ids])[0].cpu().numpy()
        return index.matches(index.nearest(vector, k)[0])
    query = glove_text_embeds(model, processor.tokenizer, [text])[0]
    return index.matches(index.nearest(query.cpu().numpy(), k, array="tag_embeds")[0])


__all__ = [
    "SEARCH_METHODS",
    "check_method",
    "check_text",
    "glove_text_embeds",
    "rerank",
    "rerank_token_ids",
    "search",
    "text_token_ids",
    "with_label_evidence",
]
