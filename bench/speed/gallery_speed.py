"""Exact search vs Annoy: build time, query time and recall@10 against exact, in one run.

Three galleries: the Flickr8k dev images (image representations of the model, from the feature cache);
N random unit vectors of the representation size (default 1,000,000), queried with random unit vectors;
and N "model-like" vectors drawn from a Gaussian with the mean and covariance of the train images'
representations, queried with the real dev representations. Uniform random vectors have no structure for
a tree to use (every direction alike); the model-like gallery shows what Annoy does on 1M vectors shaped like
the ones a real photo gallery holds. `--hnsw-ef` adds a graph index (faiss HNSW) for comparison.
Run: python -m bench.speed.gallery_speed --model checkpoints/onenet-flickr8k --data-dir ../shared/datasets/flickr8k
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from annoy import AnnoyIndex
from tqdm.auto import tqdm

from bench.common import write_result
from onenet_hf import OneNet, read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import image_inputs_from_features


def exact_top(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact cosine top-k of each query (one query at a time, as a user asks) and mean seconds per query."""
    answers, start = [], time.perf_counter()
    for query in queries:
        scores = gallery @ query
        top = np.argpartition(-scores, k)[:k]
        answers.append(top[np.argsort(-scores[top])])
    return np.stack(answers), (time.perf_counter() - start) / len(queries)


def timed_queries(search, queries: np.ndarray, truth: np.ndarray, k: int = 10) -> dict:
    """Mean milliseconds per query (one at a time) and recall@k of `search(query, k)` against `truth`."""
    start = time.perf_counter()
    found = [search(query, k) for query in queries]
    per_query = (time.perf_counter() - start) / len(queries)
    recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)])
    return {"ms_per_query": 1000 * per_query, "recall@10": float(recall)}


def annoy_run(gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray, n_trees: int, search_ks) -> dict:
    start = time.perf_counter()
    index = AnnoyIndex(gallery.shape[1], "angular")
    for row, vector in enumerate(tqdm(gallery, desc="annoy add", unit="vec", mininterval=5)):
        index.add_item(row, vector)
    index.build(n_trees, n_jobs=-1)
    build = time.perf_counter() - start
    rows = [
        {
            "search_k": search_k,
            **timed_queries(lambda q, k, s=search_k: index.get_nns_by_vector(q, k, search_k=s), queries, truth),
        }
        for search_k in search_ks
    ]
    return {"n_trees": n_trees, "build_s": build, "queries": rows}


def hnsw_run(gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray, ef_searches) -> dict:
    """A graph index for comparison: faiss HNSW (M 32, efConstruction 64, inner product on unit vectors).

    faiss is not a OneNet dependency: `pip install faiss-cpu` to run this part. Queries run one thread each.
    """
    import faiss

    start = time.perf_counter()
    index = faiss.IndexHNSWFlat(gallery.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 64
    index.add(gallery)
    build = time.perf_counter() - start
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in ef_searches:
        index.hnsw.efSearch = ef
        rows.append({"ef_search": ef, **timed_queries(lambda q, k: index.search(q[None], k)[1][0], queries, truth)})
    faiss.omp_set_num_threads(threads)
    return {"build_s": build, "queries": rows}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def representations(net: OneNet, args: argparse.Namespace, split: str) -> np.ndarray:
    """Unit image representations of a Flickr8k split, from the feature cache."""
    examples = read_split(args.data_dir, split)
    grids = cached_backbone_features(
        net.model, net.processor.image_processor, [e.path for e in examples], args.cache_dir
    )
    return unit(image_inputs_from_features(net.model, grids)[1].numpy())


def model_like(sample: np.ndarray, size: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    """`size` unit vectors from a Gaussian with the mean and covariance of `sample`'s rows."""
    factor = np.linalg.cholesky(np.cov(sample.T) + 1e-6 * np.eye(sample.shape[1])).astype(np.float32)
    mean = sample.mean(0).astype(np.float32)
    blocks = [
        rng.standard_normal((min(chunk, size - start), sample.shape[1]), dtype=np.float32) @ factor.T + mean
        for start in range(0, size, chunk)
    ]
    return unit(np.concatenate(blocks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--random-size", type=int, default=1_000_000)
    parser.add_argument("--model-like-size", type=int, default=1_000_000, help="0 leaves that gallery out")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--n-trees", type=int, nargs="*", default=[10, 50], help="none: leave Annoy out")
    parser.add_argument("--hnsw-ef", type=int, nargs="*", default=[], help="efSearch values of a faiss HNSW run")
    parser.add_argument("--search-k", type=int, nargs="+", default=[-1, 20_000, 100_000])
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    net = OneNet.from_pretrained(args.model)
    dev, train = (representations(net, args, split) for split in ("dev", "train"))
    rng = np.random.default_rng(0)
    galleries = {
        "flickr8k-dev": (dev, dev[rng.choice(len(dev), min(args.queries, len(dev)), replace=False)]),
        f"random-{args.random_size}": (
            unit(rng.standard_normal((args.random_size, dev.shape[1]), dtype=np.float32)),
            unit(rng.standard_normal((args.queries, dev.shape[1]), dtype=np.float32)),
        ),
    }
    if args.model_like_size:
        galleries[f"model-like-{args.model_like_size}"] = (
            model_like(train, args.model_like_size, rng),
            galleries["flickr8k-dev"][1],
        )
    if not args.random_size:
        del galleries[f"random-{args.random_size}"]
    results = {}
    for name, (gallery, queries) in galleries.items():
        truth, exact_seconds = exact_top(gallery, queries, 10)
        runs = [annoy_run(gallery, queries, truth, n, args.search_k) for n in args.n_trees]
        exact_ms = 1000 * exact_seconds
        results[name] = {"size": len(gallery), "dim": gallery.shape[1], "exact_ms_per_query": exact_ms, "annoy": runs}
        print(f"\n{name}: {len(gallery)} x {gallery.shape[1]}, exact {exact_ms:.2f} ms/query")
        for run in runs:
            for row in run["queries"]:
                setting = f"n_trees={run['n_trees']:<3} build {run['build_s']:7.1f} s  search_k={row['search_k']:<7}"
                print(f"  annoy {setting} {row['ms_per_query']:7.2f} ms/query  recall@10 {row['recall@10']:.3f}")
        if args.hnsw_ef:
            hnsw = results[name]["hnsw"] = hnsw_run(gallery, queries, truth, args.hnsw_ef)
            for row in hnsw["queries"]:
                setting = f"build {hnsw['build_s']:7.1f} s  efSearch={row['ef_search']:<5}"
                print(f"  hnsw  {setting} {row['ms_per_query']:7.2f} ms/query  recall@10 {row['recall@10']:.3f}")
    if args.output:
        write_result(results, Path(args.output))


if __name__ == "__main__":
    main()
