"""Map quality and time: trustworthiness at k=10 and wall time of 2-D maps, per method, in one run.

Three point sets: the representations of the Flickr8k dev images (the model on cached backbone features, as the
gallery stores them); every word of the decoder's learned caption space; and the most frequent alphabetic GloVe
words (default 10,000, for time). Methods: openTSNE and scikit-learn's TSNE as `onenet map` runs them
(`explore.maps.project`: cosine, perplexity min(30, (n - 1) / 3), PCA start), and umap-learn when it is installed
(cosine, 15 neighbours, seeded, which makes it single-threaded: its rows say 1 core). Each method maps a small
set once first, so imports and JIT compilation are not timed. Target: trustworthiness >= 0.90. Run:
python -m bench.quality.map_quality --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k \
    --n-jobs 1 2
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
import warnings
from pathlib import Path

import numpy as np

from bench.common import write_result

TARGET = 0.90


def umap_points(vectors: np.ndarray, seed: int) -> np.ndarray:
    import umap

    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state": said in the docstring
        warnings.simplefilter("ignore", UserWarning)
        return umap.UMAP(metric="cosine", random_state=seed).fit_transform(vectors)


def map_points(vectors: np.ndarray, method: str, seed: int, n_jobs: int) -> np.ndarray:
    from onenet_hf.explore.embedding_map import check_map_size, project

    if method == "umap":
        return umap_points(vectors, seed)
    return project(vectors, method, check_map_size(len(vectors), None, "points"), seed, n_jobs)


def point_sets(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The vectors of each point set, cut to `--limit` rows."""
    from onenet_hf import OneNet, read_split
    from onenet_hf.data.feature_cache import cached_backbone_features
    from onenet_hf.evaluation import image_inputs_from_features
    from onenet_hf.explore.embedding_map import word_rows

    net = OneNet.from_pretrained(args.model)
    paths = [example.path for example in read_split(args.data_dir, "dev")]
    grids = cached_backbone_features(net.model, net.processor.image_processor, paths, args.cache_dir)
    _, representations = image_inputs_from_features(net.model, grids[: args.limit])
    glove = net.word_vectors("glove")
    glove_rows = word_rows(glove, None, args.glove_words)[: args.limit]
    return {
        "dev images (representations)": representations.numpy(),
        "caption words (learned space)": net.word_vectors("learned").vectors[: args.limit],
        f"GloVe words (top {args.glove_words:,})": glove.vectors[glove_rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--cache-dir", help="backbone feature cache (default: the one training and evaluation use)")
    parser.add_argument("--methods", default="opentsne,sklearn-tsne,umap", help="umap is skipped when not installed")
    parser.add_argument("--n-jobs", type=int, nargs="+", default=[2], help="cores a method may use; several: each")
    parser.add_argument("--glove-words", type=int, default=10_000)
    parser.add_argument("--limit", type=int, help="at most this many points per set (a quick check of the script)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10, help="neighbours of trustworthiness")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(max(args.n_jobs)))  # umap's threads; before numba loads
    from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR
    from onenet_hf.explore.embedding_map import map_trustworthiness

    args.cache_dir = args.cache_dir or DEFAULT_CACHE_DIR
    methods = [m for m in args.methods.split(",") if m != "umap" or importlib.util.find_spec("umap") is not None]
    sets = point_sets(args)
    warm_up = next(iter(sets.values()))[:60]
    runs = [(method, n_jobs) for method in methods for n_jobs in (args.n_jobs if method != "umap" else [1])]
    for method, n_jobs in runs:
        map_points(warm_up, method, args.seed, n_jobs)
    rows = []
    for name, vectors in sets.items():
        for method, n_jobs in runs:
            start = time.perf_counter()
            points = map_points(vectors, method, args.seed, n_jobs)
            seconds = time.perf_counter() - start
            trust = map_trustworthiness(vectors, points, args.k)
            rows.append({"set": name, "points": len(vectors), "method": method, "cores": n_jobs,
                         "seconds": seconds, "trustworthiness": trust})  # fmt: skip
    print(f"\n| point set | points | method | cores | seconds | trustworthiness@{args.k} | >= {TARGET} |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    for row in rows:
        trust = row["trustworthiness"]
        print(f"| {row['set']} | {row['points']:,} | {row['method']} | {row['cores']} | {row['seconds']:.1f} | "
              f"{trust:.3f} | {'yes' if trust >= TARGET else 'no'} |")  # fmt: skip
    if args.output:
        settings = {key: getattr(args, key) for key in ("model", "n_jobs", "glove_words", "limit", "seed", "k")}
        write_result({"settings": settings, "target": TARGET, "rows": rows}, Path(args.output))


if __name__ == "__main__":
    main()
