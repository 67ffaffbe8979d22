"""Search quality: text->image and image->text recall of each search method on a split's captions, scored as
`search` scores them; `RetrievalEvaluator` runs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.datasets import CaptionedImage
from ..errors import OneNetError
from ..language.text_encoder import encode_sentences
from ..modeling_onenet import OneNetModel
from ..processing_onenet import OneNetProcessor
from ..uses.search import (
    SEARCH_METHODS,
    check_method,
    glove_text_embeds,
    rerank,
    rerank_token_ids,
    text_token_ids,
    with_label_evidence,
)
from .splits import SplitEvaluator, image_inputs_from_features

if TYPE_CHECKING:
    from ..onenet import OneNet


def retrieval_ranks(similarity: torch.Tensor, text_to_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's rank of its image and each image's best rank of its texts (0 = first), from a (texts, images)
    score matrix and each text's image: the per-query outcomes that recall counts."""
    similarity = similarity.double() if similarity.dtype == torch.float64 else similarity.float()
    truth = similarity.gather(1, text_to_image[:, None])
    text_ranks = (similarity > truth).sum(1)
    best_truth = torch.full((similarity.shape[1],), -torch.inf, dtype=similarity.dtype)
    best_truth = best_truth.scatter_reduce(0, text_to_image, truth[:, 0], "amax")
    return text_ranks, (similarity.T > best_truth[:, None]).sum(1)


def retrieval_metrics(similarity: torch.Tensor, text_to_image: torch.Tensor) -> dict[str, float]:
    """Recall@1/5/10 (%) and median rank both ways from a (texts, images) score matrix and each text's image.

    Image-to-text counts an image as found at the best rank of any of its texts.
    """
    text_ranks, image_ranks = retrieval_ranks(similarity, text_to_image)
    metrics: dict[str, float] = {}
    for name, ranks in (("text_to_image", text_ranks), ("image_to_text", image_ranks)):
        for k in (1, 5, 10):
            metrics[f"{name}_R@{k}"] = 100.0 * float((ranks < k).float().mean())
        metrics[f"{name}_median_rank"] = float(ranks.float().median()) + 1.0
    return metrics


@torch.inference_mode()
def _reranked_scores(
    model: OneNetModel, similarity: torch.Tensor, token_ids, representations, captions, pooled
) -> torch.Tensor:
    """Text-to-image scores (float64) that rank each text's images as `reranked` search does: the top
    `rerank_top_k` by the decoder's re-ranking score plus label evidence, above the rest by retrieval cosine."""
    scores = similarity.double()
    for text in tqdm(range(len(scores)), desc="decoder re-ranking", unit="query"):
        if token_ids[text] is None:  # the decoder knows none of its words: the retrieval order stands, as in search
            rows = similarity[text].topk(min(model.config.rerank_top_k, similarity.shape[1])).indices
            reranked = similarity[text, rows].double()
            rows, reranked = with_label_evidence(model, captions[text], rows, reranked, pooled, False)
        else:
            rows, reranked = rerank(
                model, token_ids[text], similarity[text], representations, model.config.rerank_top_k
            )
            rows, reranked = with_label_evidence(model, captions[text], rows, reranked, pooled, True)
        scores[text, rows] = 1e4 + reranked.double()
    return scores


@torch.inference_mode()
def _retrieval_scores(model: OneNetModel, similarity: torch.Tensor, captions, pooled) -> torch.Tensor:
    """Text-to-image scores that rank as the `retrieval` search method does: each text's top `rerank_top_k` by
    cosine plus label evidence, above the rest by cosine."""
    scores = similarity.double()
    for text in range(len(scores)):
        rows = similarity[text].topk(min(model.config.rerank_top_k, similarity.shape[1])).indices
        rows, ranked = with_label_evidence(model, captions[text], rows, similarity[text, rows].double(), pooled, False)
        scores[text, rows] = 1e4 + ranked
    return scores


def caption_queries(
    examples: list[CaptionedImage], captions_per_image: int | None = None
) -> tuple[list[str], torch.Tensor]:
    """A split's captions as retrieval queries (each image's first `captions_per_image`, all by default) and the
    row of each one's image."""
    captions = [caption for e in examples for caption in e.captions[:captions_per_image]]
    owners = torch.tensor([i for i, e in enumerate(examples) for _ in e.captions[:captions_per_image]])
    return captions, owners


@torch.inference_mode()
def retrieval_similarity(model: OneNetModel, captions: list[str], pooled: torch.Tensor) -> torch.Tensor:
    """(texts, images) retrieval-space cosines: the `retrieval` method's scores, where both re-rankings start."""
    texts = model.get_retrieval_text_embeds(encode_sentences(captions, model.config.text_encoder_name))
    return texts @ model.get_retrieval_image_embeds(pooled).T


def prior_images(representations: torch.Tensor, count: int) -> torch.Tensor:
    """`count` image representations of a split, drawn with a fixed seed: the images captions' log priors
    (`caption_log_priors`) are taken over when an evaluation re-ranks captions."""
    rows = torch.randperm(len(representations), generator=torch.Generator().manual_seed(0))[:count]
    return representations[rows]


@torch.inference_mode()
def reranked_text_scores(
    model: OneNetModel, similarity: torch.Tensor, token_ids, representations, log_priors: torch.Tensor
) -> torch.Tensor:
    """(texts, images) scores that rank each image's texts as `rerank_texts` does: the top `rerank_top_k` by the
    decoder's pointwise mutual information, above the rest by retrieval cosine."""
    scores = similarity.double().T.clone()
    for image in tqdm(range(len(scores)), desc="decoder re-ranking of captions", unit="image"):
        rows, reranked = rerank_texts(
            model, token_ids, similarity[:, image], representations[image : image + 1], log_priors,
            model.config.rerank_top_k,
        )  # fmt: skip
        scores[image, rows] = 1e4 + reranked
    return scores.T


def evaluate_retrieval(
    model: OneNetModel,
    processor: OneNetProcessor,
    grids: np.ndarray,
    examples: list[CaptionedImage],
    method: str,
    captions_per_image: int | None = None,
) -> dict[str, float]:
    """Text-to-image and image-to-text recall of a search method on a split: every caption queries the split's
    images, every image its captions. `reranked` re-ranks both ways with the decoder (`rerank`, `rerank_texts`);
    `invert` runs the inversion per caption.
    `captions_per_image` keeps only each image's first captions as queries (all by default).
    """
    check_method(method)
    model.eval()
    pooled, representations = image_inputs_from_features(model, grids)
    captions, owners = caption_queries(examples, captions_per_image)
    if method in ("reranked", "invert"):  # the decoder reads the captions' tokens
        token_ids = [
            (rerank_token_ids if method == "reranked" else text_token_ids)(
                processor, c, model.config.max_caption_length
            )
            for c in captions
        ]
    if method in ("retrieval", "reranked"):
        similarity = retrieval_similarity(model, captions, pooled)
    elif method == "glove":
        with torch.inference_mode():
            queries = glove_text_embeds(model, processor.tokenizer, captions)
            similarity = queries @ model.get_tag_image_embeds(representations).T
    if method == "reranked":  # the decoder re-ranks images for each text, and texts for each image
        text_scores = _reranked_scores(model, similarity, token_ids, representations, captions, pooled)
        images = retrieval_metrics(text_scores, owners)
        priors = caption_log_priors(model, token_ids, prior_images(representations, model.config.text_prior_images))
        texts = retrieval_metrics(reranked_text_scores(model, similarity, token_ids, representations, priors), owners)
        return {k: (images if k.startswith("text_to_image") else texts)[k] for k in images}
    if method == "retrieval":  # text-to-image as search ranks; image-to-text by cosine
        images = retrieval_metrics(_retrieval_scores(model, similarity, captions, pooled), owners)
        texts = retrieval_metrics(similarity, owners)
        return {k: (images if k.startswith("text_to_image") else texts)[k] for k in images}
    if method == "invert":
        chunks = [token_ids[i : i + 50] for i in range(0, len(token_ids), 50)]
        inverted = torch.cat([model.invert_captions(chunk) for chunk in tqdm(chunks, desc="inverting")])
        similarity = F.normalize(inverted, dim=-1) @ F.normalize(representations, dim=-1).T
    return retrieval_metrics(similarity, owners)


@torch.inference_mode()
def caption_log_priors(
    model, token_ids: Sequence[Sequence[int] | None], prior_embeds: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """Each caption's log prior (`get_caption_log_priors`) over the image representations `prior_embeds`, in
    batches; 0 for a caption the decoder cannot read (None)."""
    known = [i for i, ids in enumerate(token_ids) if ids is not None]
    priors = torch.zeros(len(token_ids))
    for start in range(0, len(known), batch_size):
        rows = known[start : start + batch_size]
        priors[rows] = model.get_caption_log_priors([token_ids[i] for i in rows], prior_embeds).cpu()
    return priors


@torch.inference_mode()
def rerank_texts(
    model,
    token_ids: Sequence[Sequence[int] | None],
    cosines: torch.Tensor,
    image_embeds: torch.Tensor,
    log_priors: torch.Tensor,
    top: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The `top` captions of N with the best retrieval cosines (N,) for one image (1, hidden_size), re-scored by
    the decoder (`get_text_rerank_scores`): their rows and scores, best first. A caption the decoder cannot read
    (None) keeps its scaled cosine: the decoder has no say on it."""
    rows = cosines.topk(min(top, len(cosines))).indices
    scores = model.get_scaled_retrieval_cosines(cosines[rows].double())
    readable = [k for k, row in enumerate(rows.tolist()) if token_ids[row] is not None]
    if readable:
        chosen = rows[readable]
        scores[readable] = model.get_text_rerank_scores(
            [token_ids[row] for row in chosen.tolist()], image_embeds, cosines[chosen], log_priors[chosen]
        ).double()
    order = scores.argsort(descending=True, stable=True)
    return rows[order], scores[order]


@dataclass(kw_only=True)
class RetrievalEvaluator(SplitEvaluator):
    """Recall of each search method (`methods`) both ways on a split's captions (`captions_per_image` of each
    image, default all); primary metric text->image R@1 of the first method."""

    primary_metric: ClassVar[str] = "text_to_image_R@1"
    methods: Sequence[str] = SEARCH_METHODS
    captions_per_image: int | None = None

    def __post_init__(self) -> None:
        if self.captions_per_image is not None and self.captions_per_image < 1:
            raise OneNetError(f"captions_per_image must be 1 or more, got {self.captions_per_image}")
        for method in self.methods:  # a bad name fails before hours of work on the good ones
            check_method(method)

    def __call__(self, net: OneNet) -> dict:
        examples, grids, result = self.inputs(net, "retrieval")
        metrics = {
            method: evaluate_retrieval(net.model, net.processor, grids, examples, method, self.captions_per_image)
            for method in self.methods
        }
        return result | {"captions_per_image": self.captions_per_image, "metrics": metrics}
