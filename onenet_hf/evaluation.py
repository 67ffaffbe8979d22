"""Quality measures: captions (pycocoevalcap BLEU-1..4, METEOR, ROUGE-L, CIDEr), tag precision, search recall,
analogy accuracy; `evaluate` runs one task as `onenet evaluate` does, through the same functions users call."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data.datasets import CaptionedImage, read_coco_objects, read_split
from .data.features import DEFAULT_CACHE_DIR, cached_backbone_features
from .errors import OneNetError
from .label_guidance import LABEL_THRESHOLD, check_label_threshold
from .language.text_encoder import encode_sentences
from .language.word_vectors import content_words, glove_vectors, normalize_word
from .modeling_onenet import OneNetModel
from .options import EVALUATION_TASKS, check_weight
from .processing_onenet import OneNetProcessor
from .uses.caption import caption_options, captions_from_embeddings, imagenet_token_bias
from .uses.search import (
    SEARCH_METHODS,
    caption_log_priors,
    check_method,
    glove_text_embeds,
    rerank,
    rerank_texts,
    rerank_token_ids,
    text_token_ids,
    with_label_evidence,
)
from .uses.tag import CAPTION_SAMPLES, CAPTION_WEIGHT, IMAGENET_WEIGHT, Tagger
from .uses.words import ANALOGY_METHODS, evaluate_analogies
from .utils.messages import shorten

if TYPE_CHECKING:
    from .onenet import OneNet

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

    unknown = set(metrics) - set(CAPTION_METRICS)
    if unknown:
        raise OneNetError(f"unknown metrics {sorted(unknown)}; choose from {CAPTION_METRICS}")
    gts, res = _ptb_tokenized(references, hypotheses)
    scores: dict[str, float] = {}
    if any(m.startswith("BLEU") for m in metrics):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n}": float(b) for n, b in enumerate(bleu, 1)})
    scorers: Mapping[str, type] = {"METEOR": Meteor, "ROUGE-L": Rouge, "CIDEr": Cider}
    for name, scorer in scorers.items():
        if name in metrics:
            scores[name] = float(scorer().compute_score(gts, res)[0])
    return {name: scores[name] for name in metrics}


def _ptb_tokenized(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> tuple[dict, dict]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    if len(references) != len(hypotheses):
        raise OneNetError(f"got {len(references)} reference sets but {len(hypotheses)} hypotheses")
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({i: [{"caption": c} for c in refs] for i, refs in enumerate(references)})
    return gts, tokenizer.tokenize({i: [{"caption": h}] for i, h in enumerate(hypotheses)})


def cider_per_image(references: Sequence[Sequence[str]], hypotheses: Sequence[str]) -> np.ndarray:
    """Each image's CIDEr (their mean is `caption_metrics`' corpus CIDEr): for paired comparisons of two
    captioners on the same images, e.g. a bootstrap of the difference."""
    from pycocoevalcap.cider.cider import Cider

    return np.asarray(Cider().compute_score(*_ptb_tokenized(references, hypotheses))[1], dtype=np.float64)


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
    no_repeat_ngram_size: int | None = None,
    imagenet_steering: float = 0.0,
    imagenet_labels: float = 0.0,
) -> tuple[dict[str, float], list[str]]:
    """Caption metrics of the model on cached backbone features of `examples`, and the captions; n-gram
    blocking defaults to the model's generation config; `imagenet_steering` > 0 steers the search towards the
    words of the ImageNet labels (`imagenet_token_bias`); `imagenet_labels` > 0 makes confident labels' words
    appear (`label_guidance`; off here by default, as training-time evaluation wants the decoder alone)."""
    model.eval()
    texts: list[str] = []
    for start in range(0, len(examples), batch_size):
        grid = torch.from_numpy(np.array(features[start : start + batch_size])).to(model.device)
        embeds = model.get_image_features(backbone_features=grid)
        bias = probabilities = None
        if imagenet_steering or imagenet_labels:
            pooled = model.get_pooled_features(grid.float())
            probabilities = model.get_imagenet_logits(pooled).softmax(-1)
            if imagenet_steering:
                bias = imagenet_token_bias(model, processor.tokenizer, pooled, imagenet_steering)
        options = (beam_size, length_penalty, no_repeat_ngram_size, bias, probabilities, imagenet_labels)
        captions = captions_from_embeddings(model, processor, embeds, *options)
        texts += [caption.text for caption in captions]
    return caption_metrics([e.captions for e in examples], texts, metrics), texts


def caption_diversity(captions: Sequence[str]) -> dict[str, float]:
    """How loopy and how varied captions are: the share (%) that say some word pair twice ("a white shirt and a
    white shirt"), and how many distinct words they use together (a decoder that says the safe thing uses few)."""
    repeated, words = 0, set()
    for text in captions:
        tokens = text.lower().split()
        bigrams = list(zip(tokens, tokens[1:], strict=False))
        repeated += len(set(bigrams)) < len(bigrams)
        words.update(tokens)
    share = 100.0 * repeated / len(captions) if captions else float("nan")
    return {"repeated_bigram_%": share, "distinct_words": float(len(words))}


@cache
def coco_object_words() -> dict[tuple[str, ...], str]:
    """Stemmed caption words and phrases (`normalize_word`) -> the COCO category they name (man, woman, child...
    -> person), from `resources/coco_object_words.tsv`, as CHAIR's synonym list does."""
    text = resources.files("onenet_hf").joinpath("resources/coco_object_words.tsv").read_text(encoding="utf-8")
    words = {}
    for line in text.splitlines()[1:]:
        category, names = line.split("\t")
        for name in names.split(","):
            words[tuple(normalize_word(word) for word in name.split())] = category
    return words


def caption_objects(caption: str) -> set[str]:
    """The COCO categories a caption names; two-word names are read first, so "hot dog" is a hot dog, not a dog,
    and "teddy bear" no bear."""
    stems = [normalize_word(word) for word in re.findall(r"[a-z]+", caption.lower())]
    names, found, place = coco_object_words(), set(), 0
    while place < len(stems):
        pair = tuple(stems[place : place + 2])
        if len(pair) == 2 and pair in names:
            found.add(names[pair])
            place += 2
            continue
        if (stems[place],) in names:
            found.add(names[(stems[place],)])
        place += 1
    return found


def object_metrics(captions: Sequence[str], objects: Sequence[frozenset[str]]) -> dict[str, float]:
    """Object hallucination (CHAIR, Rohrbach et al., EMNLP 2018) and recall against annotated objects, in %:
    CHAIRi, the share of the object categories captions name that the photo lacks; CHAIRs, the share of captions
    naming at least one such object; object recall, the share of the photos' categories the captions name."""
    if len(captions) != len(objects):
        raise OneNetError(f"got {len(captions)} captions but {len(objects)} object sets")
    named = [caption_objects(caption) for caption in captions]
    mentions = sum(map(len, named))
    invented = [len(said - present) for said, present in zip(named, objects, strict=True)]
    recalled = sum(len(said & present) for said, present in zip(named, objects, strict=True))
    present = sum(map(len, objects))
    return {
        "CHAIRi_%": 100.0 * sum(invented) / mentions if mentions else 0.0,
        "CHAIRs_%": 100.0 * sum(count > 0 for count in invented) / len(captions) if captions else float("nan"),
        "object_recall_%": 100.0 * recalled / present if present else float("nan"),
    }


def tag_precision(predicted: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """Share of predicted tags whose stem (`normalize_word`) occurs among the stems of the image's captions."""
    if len(predicted) != len(references):
        raise OneNetError(f"got {len(predicted)} tag lists but {len(references)} reference sets")
    hits = []
    for tags, captions in zip(predicted, references, strict=True):
        stems = {normalize_word(word) for caption in captions for word in content_words(caption)}
        hits += [normalize_word(tag) in stems for tag in tags]
    return float(np.mean(hits)) if hits else float("nan")


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
    imagenet_weight: float = IMAGENET_WEIGHT,
) -> dict:
    """Tag precision@k on cached backbone features, the share of tags the captions never used (words outside
    the caption vocabulary), and the tags of the first images; `caption_samples=0` with `imagenet_weight=0`
    measures the tag head alone."""
    pooled, representations = image_inputs_from_features(model, grids)
    tagger = Tagger(model, processor.tokenizer, None, caption_samples, caption_weight, imagenet_weight=imagenet_weight)
    batches = range(0, len(representations), tagger.batch_size)
    tags = [
        [w.word for w in words]
        for start in tqdm(batches, desc="tags", unit="batch")
        for words in tagger.top_words(
            representations[start : start + tagger.batch_size], k, pooled[start : start + tagger.batch_size]
        )
    ]
    caption_vocabulary = processor.tokenizer.get_vocab()
    unseen = sum(word not in caption_vocabulary for words in tags for word in words) / sum(map(len, tags))
    return {
        f"tag_precision@{k}": tag_precision(tags, [e.captions for e in examples]),
        "share_outside_caption_vocabulary": unseen,
        "examples": tags[:5],
    }


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


def evaluate(
    net: OneNet | None,
    task: str = "captions",
    data_dir: str | Path | None = None,
    split: str = "dev",
    data_format: str = "flickr8k",
    cache_dir: str | Path = DEFAULT_CACHE_DIR,
    beam_size: int | None = None,
    length_penalty: float | None = None,
    methods: Sequence[str] = SEARCH_METHODS,
    captions_per_image: int | None = None,
    caption_samples: int = CAPTION_SAMPLES,
    caption_weight: float = CAPTION_WEIGHT,
    space: str = "glove",
    analogy_methods: Sequence[str] = ANALOGY_METHODS,
    restrict_vocab: int = 30_000,
    questions: str | Path | None = None,
    no_repeat_ngram_size: int | None = None,
    imagenet_weight: float = IMAGENET_WEIGHT,
    imagenet_steering: float = 0.0,
    imagenet_labels: float = LABEL_THRESHOLD,
) -> dict:
    """One evaluation of a loaded `OneNet`, as the record `onenet evaluate --output` writes: the task, data and
    options, then "metrics". The captions task also returns `"captions"`: (image file name, caption) pairs.
    GloVe analogies need no model (`net=None`).

    With the PyTorch backend, images go through the backbone once (`features.cached_backbone_features`) and the
    tasks run on the cached grids; the ONNX backend captions the image files."""
    if task not in EVALUATION_TASKS:
        raise OneNetError(f"unknown evaluation task {shorten(task)}; choose from {EVALUATION_TASKS}")
    if not isinstance(restrict_vocab, int) or restrict_vocab < 4:
        raise OneNetError(
            f"restrict_vocab must be an integer of at least 4 (three query words and an answer), got {restrict_vocab}"
        )
    if captions_per_image is not None and captions_per_image < 1:
        raise OneNetError(f"captions_per_image must be 1 or more, got {captions_per_image}")
    if task == "captions":
        check_weight("imagenet_steering", imagenet_steering)  # before any image is read
        check_label_threshold(imagenet_labels)
    if task == "retrieval":
        for method in methods:  # a bad name fails before hours of work on the good ones
            check_method(method)
    if task == "analogy":
        vectors = glove_vectors() if space == "glove" else net.word_vectors(space)
        metrics = {
            m: evaluate_analogies(vectors, questions or gensim_questions(), restrict_vocab, m) for m in analogy_methods
        }
        return {"task": task, "space": space, "restrict_vocab": restrict_vocab, "metrics": metrics}
    if not data_dir:
        raise OneNetError(f"a data folder is required for the {task} task (--data-dir)")
    examples = read_split(data_dir, split, data_format)
    result = {"task": task, "dataset": Path(data_dir).name, "split": split, "images": len(examples)}
    torch_backend = isinstance(net.model, OneNetModel)
    if not torch_backend and task != "captions":
        raise OneNetError(f"the {task} task runs on the PyTorch backend; leave out --backend onnx")
    grids = None
    if torch_backend:  # cached backbone features make repeated evaluations cheap
        paths = [e.path for e in examples]
        grids = cached_backbone_features(net.model, net.processor.image_processor, paths, cache_dir)
    if task == "captions":
        generation = caption_options(net.model, beam_size, length_penalty, no_repeat_ngram_size)
        options = {
            "beam_size": generation.num_beams,
            "length_penalty": generation.length_penalty,
            "no_repeat_ngram_size": generation.no_repeat_ngram_size or 0,
            "imagenet_steering": imagenet_steering,
            "imagenet_labels": imagenet_labels,
        }
        if grids is not None:
            scores, texts = evaluate_on_features(
                net.model, net.processor, grids, examples, metrics=CAPTION_METRICS, **options
            )
        else:
            texts = [c.text for c in net.caption([e.path for e in examples], **options)]
            scores = caption_metrics([e.captions for e in examples], texts)
        backend = "torch" if torch_backend else f"onnx-{net.model.variant}"
        captions = [(e.path.name, text) for e, text in zip(examples, texts, strict=True)]
        metrics = scores | caption_diversity(texts)
        instances = Path(data_dir) / f"instances_{split}.json"
        if data_format == "coco" and instances.is_file():  # objects named that the photo lacks, and recall
            objects = read_coco_objects(instances)
            metrics |= object_metrics(texts, [objects.get(e.path.name, frozenset()) for e in examples])
        return result | {"backend": backend} | options | {"metrics": metrics, "captions": captions}
    if task == "tags":
        tagging = dict(caption_samples=caption_samples, caption_weight=caption_weight, imagenet_weight=imagenet_weight)
        return result | tagging | {"metrics": evaluate_tags(net.model, net.processor, grids, examples, 5, **tagging)}
    metrics = {m: evaluate_retrieval(net.model, net.processor, grids, examples, m, captions_per_image) for m in methods}
    return result | {"captions_per_image": captions_per_image, "metrics": metrics}


def gensim_questions() -> str:
    """gensim's copy of the Google analogy questions (questions-words.txt)."""
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise OneNetError("give a questions file (--questions questions-words.txt), or pip install gensim") from None
    return datapath("questions-words.txt")


def format_table(results: Mapping[str, float]) -> str:
    """Two aligned columns, metric and value."""
    width = max(len(name) for name in results)
    return "\n".join(f"{name:<{width}}  {value:.4f}" for name, value in results.items())


__all__ = [
    "CAPTION_METRICS",
    "EVALUATION_TASKS",
    "evaluate",
    "gensim_questions",
    "caption_diversity",
    "caption_metrics",
    "caption_objects",
    "object_metrics",
    "evaluate_on_features",
    "evaluate_retrieval",
    "evaluate_tags",
    "image_inputs_from_features",
    "format_table",
    "retrieval_metrics",
    "retrieval_ranks",
    "tag_precision",
]
