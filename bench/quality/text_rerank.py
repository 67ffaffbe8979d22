"""Image-to-text retrieval with and without the decoder re-ranking captions, and the weight that re-ranking uses.

For each dev image the `rerank_top_k` captions nearest in the retrieval space are re-scored by the scaled cosine
plus WEIGHT x the decoder's pointwise mutual information (log p(caption | image) minus the caption's log prior
over `text_prior_images` images, `evaluation.retrieval.rerank_texts`), the scoring `onenet evaluate --task retrieval
--methods reranked` reports. The priors and the retrieval scores are computed once, then each weight ranks.
Run from the repository root:

python -m bench.quality.text_rerank --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k \
    --weights 0.25 0.5 1.0 --output runs/bench/text_rerank.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import (
    caption_log_priors,
    caption_queries,
    image_inputs_from_features,
    prior_images,
    reranked_text_scores,
    retrieval_metrics,
    retrieval_similarity,
)
from onenet_hf.uses.search import rerank_token_ids

MAX_WEIGHTS = 8  # each weight re-scores every image's top captions once


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--weights", type=float, nargs="+", help="re-ranking weights (default: the model's)")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()
    if args.weights and len(args.weights) > MAX_WEIGHTS:
        parser.error(f"--weights: at most {MAX_WEIGHTS}")
    net = OneNet.from_pretrained(args.model)
    model, processor = net.model, net.processor
    examples = read_split(args.data_dir, args.split)
    grids = cached_backbone_features(model, processor.image_processor, [e.path for e in examples], args.cache_dir)
    pooled, representations = image_inputs_from_features(model, grids)
    captions, owners = caption_queries(examples)
    token_ids = [rerank_token_ids(processor, c, model.config.max_caption_length) for c in captions]
    similarity = retrieval_similarity(model, captions, pooled)
    start = time.perf_counter()
    priors = caption_log_priors(model, token_ids, prior_images(representations, model.config.text_prior_images))
    results = {"retrieval": retrieval_metrics(similarity, owners), "priors_seconds": time.perf_counter() - start}
    for weight in args.weights or [model.config.text_rerank_weight]:
        model.config.text_rerank_weight = weight
        start = time.perf_counter()
        scores = reranked_text_scores(model, similarity, token_ids, representations, priors)
        results[f"reranked, weight {weight}"] = {
            **retrieval_metrics(scores, owners), "rerank_seconds": time.perf_counter() - start,
        }  # fmt: skip
    for name, figures in results.items():
        if isinstance(figures, dict):
            recalls = " / ".join(f"{figures[f'image_to_text_R@{k}']:.2f}" for k in (1, 5, 10))
            print(f"{name}: image->text R@1 / R@5 / R@10 {recalls}")
    print(f"caption priors over {model.config.text_prior_images} images: {results['priors_seconds']:.1f} s")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
