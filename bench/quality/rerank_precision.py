"""Does the precision of re-ranked scores change the describe-to-search figures? One re-ranking pass, two rankings.

Before evaluation and search shared `uses.search.rerank`, the evaluation put re-ranked images above the rest by
adding 1e4 to float32 scores (rounding them to about 0.001); it now keeps them in float64. This ranks every dev
caption's images both ways from the same re-ranking scores and lists the queries whose true image moved. Run:

python -m bench.quality.rerank_precision --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm.auto import tqdm

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import caption_queries, image_inputs_from_features, retrieval_metrics, retrieval_similarity
from onenet_hf.uses.search import rerank, text_token_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--split", default="dev")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--output", help="write the figures and moved queries as JSON here")
    args = parser.parse_args()
    net = OneNet.from_pretrained(args.model)
    model, processor = net.model, net.processor
    examples = read_split(args.data_dir, args.split)
    grids = cached_backbone_features(model, processor.image_processor, [e.path for e in examples], args.cache_dir)
    pooled, representations = image_inputs_from_features(model, grids)
    captions, owners = caption_queries(examples)
    similarity = retrieval_similarity(model, captions, pooled)
    rounded, exact, moved = similarity.clone(), similarity.double(), []
    for text in tqdm(range(len(captions)), desc="decoder re-ranking", unit="query"):
        ids = text_token_ids(processor, captions[text], model.config.max_caption_length)
        rows, scores = rerank(model, ids, similarity[text], representations, model.config.rerank_top_k)
        rounded[text, rows] = 1e4 + scores  # float32, as the evaluation did before
        exact[text, rows] = 1e4 + scores.double()
        truth = owners[text]
        ranks = [int((s[text] > s[text, truth]).sum()) + 1 for s in (rounded, exact)]
        if ranks[0] != ranks[1]:
            moved.append({"query": text, "caption": captions[text], "rank_float32": ranks[0], "rank_float64": ranks[1]})
    results = {
        "float32": retrieval_metrics(rounded, owners),
        "float64": retrieval_metrics(exact, owners),
        "moved_queries": moved,
    }
    for name in ("float32", "float64"):
        figures = [results[name][f"text_to_image_R@{k}"] for k in (1, 5, 10)]
        print(f"{name}: text->image R@1 / R@5 / R@10 " + " / ".join(f"{f:.2f}" for f in figures))
    print(f"queries whose true image moved: {json.dumps(moved)}")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
