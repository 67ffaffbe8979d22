"""Quality measures: captions (pycocoevalcap BLEU-1..4, METEOR, ROUGE-L, CIDEr), tag precision, retrieval recall."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import CaptionedImage
from .modeling_onenet import OneNetModel
from .processing_onenet import OneNetProcessor
from .text_encoder import encode_sentences
from .uses.caption import captions_from_embeddings
from .uses.describe import (
    decoder_rerank_scores,
    description_token_ids,
    glove_description_embeds,
    invert_descriptions,
)
from .uses.tag import CAPTION_SAMPLES, CAPTION_WEIGHT, Tagger
from .word_vectors import content_words, normalize_word

CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


def caption_metrics(
    references: Sequence[Sequence[str]], hypotheses: Sequence[str], metrics: Sequence[str] = CAPTION_METRICS
) -> dict[str, float]:
    """Corpus scores of one hypothesis per image against its references, PTB-tokenised as in COCO.

    METEOR needs Java; the other metrics are pure Python.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if len(references) != len(hypotheses):
        raise ValueError(f"got {len(references)} reference sets but {len(hypotheses)} hypotheses")
    unknown = set(metrics) - set(CAPTION_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {CAPTION_METRICS}")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
    res = tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})
    scores: dict[str, float] = {}
    if any(m.startswith("BLEU") for m in metrics):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n}": float(b) for n, b in enumerate(bleu, 1)})
    scorers: Mapping[str, type] = {"METEOR": Meteor, "ROUGE-L": Rouge, "CIDEr": Cider}
    for name, scorer in scorers.items():
        if name in metrics:
            scores[name] = float(scorer().compute_score(gts, res)[0])
    return {name: scores[name] for name in metrics}


@torch.inference_mode()
def evaluate_on_features(
    model: OneNetModel,
    processor: OneNetProcessor,
    features: np.ndarray,
    examples: list[CaptionedImage],
    beam_size: int = 1,
    length_penalty: float = 1.0,
    batch_size: int = 100,
    metrics: tuple[str, ...] = ("BLEU-4", "CIDEr"),
) -> tuple[dict[str, float], list[str]]:
    """Caption metrics of the model on cached backbone features of `examples`, and the captions."""
    model.eval()
    texts: list[str] = []
    for start in range(0, len(examples), batch_size):
        grid = torch.from_numpy(np.array(features[start : start + batch_size])).to(model.device)
        embeds = model.get_image_features(backbone_features=grid)
        captions = captions_from_embeddings(model, processor, embeds, beam_size, length_penalty)
        texts += [caption.text for caption in captions]
    return caption_metrics([e.captions for e in examples], texts, metrics), texts


def tag_precision(predicted: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Share of predicted tags whose stem (`normalize_word`) occurs among the stems of the image's captions."""
    if len(predicted) != len(references):
        raise ValueError(f"got {len(predicted)} tag lists but {len(references)} reference sets")
    hits = []
    for tags, captions in zip(predicted, references, strict=True):
        stems = {normalize_word(word) for caption in captions for word in content_words(caption)}
        hits += [normalize_word(tag) in stems for tag in tags]
    return float(np.mean(hits)) if hits else float("nan")


def retrieval_metrics(similarity: torch.Tensor, text_to_image: torch.Tensor) -> dict[str, float]:
    """Recall@1/5/10 (%) and median rank both ways from a (texts, images) score matrix and each text's image.

    Image-to-text counts an image as found at the best rank of any of its texts.
    """
    similarity = similarity.float()
    truth = similarity.gather(1, text_to_image[:, None])
    text_ranks = (similarity > truth).sum(1)  # 0 = first
    best_truth = torch.full((similarity.shape[1],), -torch.inf).scatter_reduce(0, text_to_image, truth[:, 0], "amax")
    image_ranks = (similarity.T > best_truth[:, None]).sum(1)
    metrics: dict[str, float] = {}
    for name, ranks in (("text_to_image", text_ranks), ("image_to_text", image_ranks)):
        for k in (1, 5, 10):
            metrics[f"{name}_R@{k}"] = 100.0 * float((ranks < k).float().mean())
        metrics[f"{name}_median_rank"] = float(ranks.float().median()) + 1.0
    return metrics


def image_inputs_from_features(
    model: OneNetModel, grids: np.ndarray, batch_size: int = 250
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean-pooled backbone features and image representations of cached feature grids."""
    pooled, representations = [], []
    with torch.inference_mode():
        for start in tqdm(range(0, len(grids), batch_size), desc="image representations", unit="batch"):
            grid = torch.from_numpy(np.array(grids[start : start + batch_size])).float()
            pooled.append(model.get_pooled_features(grid))
            representations.append(model.get_image_features(backbone_features=grid))
    return torch.cat(pooled), torch.cat(representations)


def evaluate_tags(
    model: OneNetModel,
    processor: OneNetProcessor,
    grids: np.ndarray,
    examples: list[CaptionedImage],
    k: int = 5,
    caption_samples: int = CAPTION_SAMPLES,
    caption_weight: float = CAPTION_WEIGHT,
) -> dict:
    """Tag precision@k on cached backbone features, the share of tags the captions never used (words outside
    the caption vocabulary), and the tags of the first images; `caption_samples=0` measures the tag head alone."""
    _, representations = image_inputs_from_features(model, grids)
    tagger = Tagger(model, processor.tokenizer, None, caption_samples, caption_weight)
    tags = [
        [w.word for w in words]
        for start in tqdm(range(0, len(representations), tagger.batch_size), desc="tags", unit="batch")
        for words in tagger.top_words(representations[start : start + tagger.batch_size], k)
    ]
    caption_vocabulary = processor.tokenizer.get_vocab()
    unseen = sum(word not in caption_vocabulary for words in tags for word in words) / sum(map(len, tags))
    return {
        f"tag_precision@{k}": tag_precision(tags, [e.captions for e in examples]),
        "share_outside_caption_vocabulary": unseen,
        "examples": tags[:5],
    }


RETRIEVAL_METHODS = ("glove", "joint", "embed", "invert")


@torch.inference_mode()
def _decoder_reranked(model: OneNetModel, similarity: torch.Tensor, token_ids, representations) -> torch.Tensor:
    """Text-to-image scores with each text's top `rerank_top_k` images re-scored by the decoder, above the rest."""
    scores = similarity.clone()
    for text in tqdm(range(len(scores)), desc="decoder re-ranking", unit="query"):
        top = scores[text].topk(min(model.config.rerank_top_k, scores.shape[1])).indices
        scores[text, top] = 1e4 + decoder_rerank_scores(model, token_ids[text], representations[top], scores[text, top])
    return scores


def evaluate_retrieval(
    model: OneNetModel,
    processor: OneNetProcessor,
    grids: np.ndarray,
    examples: list[CaptionedImage],
    method: str,
    captions_per_image: int | None = None,
) -> dict[str, float]:
    """Text-to-image and image-to-text recall on a split: every caption queries the split's images.

    `joint` is the `embed` method without the decoder re-ranking (which only `embed`'s text-to-image
    direction uses); `invert` runs the inversion per caption.
    `captions_per_image` keeps only each image's first captions as queries (all by default).
    """
    if method not in RETRIEVAL_METHODS:
        raise ValueError(f"unknown retrieval method {method!r}; choose from {RETRIEVAL_METHODS}")
    model.eval()
    pooled, representations = image_inputs_from_features(model, grids)
    captions = [caption for e in examples for caption in e.captions[:captions_per_image]]
    owners = torch.tensor([i for i, e in enumerate(examples) for _ in e.captions[:captions_per_image]])
    if method in ("embed", "invert"):  # the decoder reads the captions' tokens
        token_ids = [description_token_ids(processor, c, model.config.max_caption_length) for c in captions]
    with torch.inference_mode():
        if method in ("joint", "embed"):
            texts = model.get_retrieval_text_embeds(encode_sentences(captions, model.config.text_encoder_name))
            similarity = texts @ model.get_retrieval_image_embeds(pooled).T
        elif method == "glove":
            queries = glove_description_embeds(model, processor.tokenizer, captions)
            similarity = queries @ model.get_tag_image_embeds(representations).T
    if method == "embed":  # the decoder re-ranks images for a text; image-to-text stays in the joint space
        reranked = retrieval_metrics(_decoder_reranked(model, similarity, token_ids, representations), owners)
        joint = retrieval_metrics(similarity, owners)
        return {k: (reranked if k.startswith("text_to_image") else joint)[k] for k in joint}
    if method == "invert":
        chunks = [token_ids[i : i + 50] for i in range(0, len(token_ids), 50)]
        inverted = torch.cat([invert_descriptions(model, chunk) for chunk in tqdm(chunks, desc="inverting")])
        similarity = F.normalize(inverted, dim=-1) @ F.normalize(representations, dim=-1).T
    return retrieval_metrics(similarity, owners)


def format_table(results: Mapping[str, float]) -> str:
    """Two aligned columns, metric and value."""
    width = max(len(name) for name in results)
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in results.items())


__all__ = [
    "CAPTION_METRICS",
    "caption_metrics",
    "RETRIEVAL_METHODS",
    "evaluate_on_features",
    "evaluate_retrieval",
    "evaluate_tags",
    "image_inputs_from_features",
    "format_table",
    "retrieval_metrics",
    "tag_precision",
]
