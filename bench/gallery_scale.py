"""A gallery of a million through the index's own code path: build, add 1,000, delete 1,000, query.

The vectors are injected into `indexing.write_gallery` (the function `onenet index` calls after listing files): the
image representations are bench/gallery_speed.py's "model-like" 1M (a Gaussian with the mean and covariance of the
train images' representations), the other arrays real rows of the Flickr8k train images, repeated; no image is
decoded. Queries are 200 real dev representations (`--queries`: up to all 1,000), one at a time on one thread,
timed after the shards' ANN files have been read once (a serving process's steady state: its index in the page
cache, not paged in from disk by the first queries); recall@10 is against exact search over the same live gallery.
Per ANN method (`--methods`, the index's own: ivfpq, hnsw, annoy) it reports build time and ms/query and recall at
each setting of its sweep; for the first method also adding 1,000 files (time, bytes written, rows), deleting
1,000, and querying after.
`--annoy-pca` adds, outside the index, Annoy on PCA-reduced vectors with exact re-ranking of its candidates, the
variant the issue asked to compare; `--ivfpq-variants` builds and sweeps, beside the current ivfpq, the earlier one
(no PCA, 64-byte codes) and one whose PCA keeps faiss's centring.
Run: python bench/gallery_scale.py --output bench/results/gallery_scale/gallery_scale.json
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch
from gallery_speed import exact_top, model_like, representations, timed_queries

from onenet_hf import OneNet, ann
from onenet_hf.data import read_split
from onenet_hf.evaluation import image_inputs_from_features
from onenet_hf.features import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.folders import write_json
from onenet_hf.gallery import ARRAYS, GalleryIndex, top_k_pairs
from onenet_hf.indexing import Embedder, GalleryFile, build_lock, write_gallery

IVFPQ_VARIANTS = {  # name: ann-module settings its build runs under
    "ivfpq without PCA (the default until 2026-12-05)": {"PCA_DIMS": sys.maxsize, "PQ_DIMS": 4},
    "ivfpq with faiss's centred PCA": {"_train_uncentred_pca": lambda index, sample, reduced: None},
}


def folder_files(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()} if folder.is_dir() else {}


def written_bytes() -> int:
    """Bytes this process has passed to write() so far (/proc/self/io wchar): SQLite's writes, the ANN files'.
    Memory-mapped array rows are not write() calls: `new_file_bytes` counts the shard files."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


def peak_memory_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class InjectedGallery:
    """File i of the gallery holds row i: its representation from `image_embeds`, its other arrays a real train
    image's (row i mod the sample), its content hash a hash of its name."""

    def __init__(self, image_embeds: np.ndarray, others: dict[str, np.ndarray]):
        self.image_embeds, self.others = image_embeds, others

    def files(self, rows) -> list[GalleryFile]:
        return [GalleryFile(f"/gallery/{i:08d}.jpg", f"/gallery/{i:08d}.jpg", 1000 + int(i), 0) for i in rows]

    def embed(self, batch: list[GalleryFile]):
        rows = np.array([int(item.key[-12:-4]) for item in batch])
        sample = rows % len(self.others["pooled_features"])
        return {"image_embeds": self.image_embeds[rows]} | {n: a[sample] for n, a in self.others.items()}, []

    @staticmethod
    def content_hash(path: str) -> str:
        return hashlib.sha256(path.encode()).hexdigest()

    def write(self, folder: Path, rows, method: str) -> tuple[GalleryIndex, dict]:
        """Bring the index at `folder` to files `rows`; the index, and seconds and bytes it took."""
        files, existing = self.files(rows), folder_files(folder)
        start, before = time.perf_counter(), written_bytes()
        with build_lock(folder, 0):
            index = write_gallery(folder, "bench", self.image_embeds.shape[1], files, [], Embedder(list, self.embed),
                                  self.content_hash, 10_000, method)  # fmt: skip
        seconds, write_calls = time.perf_counter() - start, written_bytes() - before
        new = {name: size for name, (size, _) in folder_files(folder).items() if name not in existing}
        return index, {"seconds": seconds, "write_call_bytes": write_calls, "new_file_bytes": sum(new.values()),
                       "new_files": sorted(new)}  # fmt: skip


@contextlib.contextmanager
def ann_settings(settings: dict):
    """The ann module's constants set to `settings` (build and query read them at each call), restored after."""
    saved = {name: getattr(ann, name) for name in settings}
    for name, value in settings.items():
        setattr(ann, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ann, name, value)


def query_rows(index: GalleryIndex, queries: np.ndarray, truth: np.ndarray, settings: dict) -> dict:
    """ms/query and recall@10 (against `truth`) of the index's approximate search under ann-module `settings`."""
    with ann_settings(settings):
        for ann_file in index.folder.glob("shard-*.*"):  # a serving process's steady state: its ANN files cached
            if ann_file.suffix[1:] in ann.ANN_METHODS:
                with ann_file.open("rb") as stream:
                    while stream.read(1 << 24):
                        pass
        index.nearest(queries[:5], 10, exact=False)  # open the ANN files
        return timed_queries(lambda q, k: [row for row, _ in index.nearest(q, k, exact=False)[0]], queries, truth)


def ms_per_query(search, queries: np.ndarray) -> float:
    search(queries[0])
    start = time.perf_counter()
    for query in queries:
        search(query)
    return 1000 * (time.perf_counter() - start) / len(queries)


def query_split(index: GalleryIndex, queries: np.ndarray) -> dict[str, float]:
    """ms/query of `GalleryIndex.nearest` (GC on and off), of its ivfpq shard's `ShardAnn.search` and of faiss's
    bare search there, and of each small shard's exact search: how much of a query is ours, at the default
    settings (bench/query_overhead.py)."""
    large = next(shard for shard in index.shards if shard.ann)
    probe = faiss.SearchParametersIVF(nprobe=max(1, round(large.ann_index._lists * ann.IVF_PROBE_SHARE)))
    params = faiss.IndexRefineSearchParameters(k_factor=ann.REFINE_FACTOR, base_index_params=probe)
    bare = large.ann_index._index  # faiss's index object: its own search, without OneNet's wrapping
    row = {
        "nearest": ms_per_query(lambda q: index.nearest(q, 10, exact=False), queries),
        "shard_ann_search": ms_per_query(lambda q: large.ann_index.search(q, 11, large), queries),
        "faiss_search": ms_per_query(lambda q: bare.search(ann.unit_rows(q[None]), 11, params=params), queries),
    }
    gc.disable()
    try:
        row["nearest_gc_off"] = ms_per_query(lambda q: index.nearest(q, 10, exact=False), queries)
    finally:
        gc.enable()
    for small in (shard for shard in index.shards if not shard.ann):

        def exact_search(query: np.ndarray, rows: np.ndarray = small.unit_live_embeds) -> list:
            return top_k_pairs(rows @ ann.unit_rows(query[None])[0], 11)

        row["small_shard_exact"] = ms_per_query(exact_search, queries)
    return row


def annoy_pca(gallery: np.ndarray, queries: np.ndarray, truth: np.ndarray, dims: int, candidates: int) -> dict:
    """Annoy (50 trees) on the top-`dims` principal components, its `candidates` re-ranked by exact cosine."""
    from annoy import AnnoyIndex

    start = time.perf_counter()
    sample = gallery[np.random.default_rng(0).choice(len(gallery), min(len(gallery), 100_000), replace=False)]
    _, _, components = np.linalg.svd(sample - sample.mean(0), full_matrices=False)
    projection = components[:dims].T.astype(np.float32)
    index = AnnoyIndex(dims, "angular")
    for block in range(0, len(gallery), 100_000):
        for offset, vector in enumerate(gallery[block : block + 100_000] @ projection):
            index.add_item(block + offset, vector)
    index.build(ann.ANNOY_TREES, n_jobs=-1)
    build = time.perf_counter() - start
    rows = []
    for search_k in (5_000, 20_000, 100_000):

        def search(query, k, search_k=search_k):
            found = np.sort(index.get_nns_by_vector(query @ projection, candidates, search_k=search_k))
            return found[np.argsort(-(gallery[found] @ query))[:k]]

        rows.append({"search_k": search_k, "candidates": candidates, **timed_queries(search, queries, truth)})
    return {"dims": dims, "build_s": build, "queries": rows}


def train_arrays(net: OneNet, args: argparse.Namespace, count: int) -> dict[str, np.ndarray]:
    """The gallery arrays other than the representation, of the first `count` train images (feature cache)."""
    paths = [example.path for example in read_split(args.data_dir, "train")[:count]]
    grids = cached_backbone_features(net.model, net.processor.image_processor, paths, args.cache_dir)
    pooled, embeds = image_inputs_from_features(net.model, grids)
    arrays = net.model.get_gallery_embeds(image_embeds=embeds, pooled_features=pooled)
    others = {name: arrays[name].float().numpy() for name in ARRAYS if name != "image_embeds"}
    return others | {"pooled_features": others["pooled_features"].astype(np.float16)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="checkpoints/onenet-flickr8k")
    parser.add_argument("--data-dir", default="../shared/datasets/flickr8k")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=1_000, help="files added, then deleted")
    parser.add_argument("--methods", nargs="+", default=list(ann.ANN_METHODS), choices=ann.ANN_METHODS)
    parser.add_argument("--annoy-pca", type=int, default=128, help="PCA dims of the Annoy variant (0: leave out)")
    help_text = f"also build and sweep these ivfpq variants: {'; '.join(IVFPQ_VARIANTS)}"
    parser.add_argument("--ivfpq-variants", action="store_true", help=help_text)
    parser.add_argument("--queries", type=int, default=200, help="dev representations queried (1 to all 1,000)")
    parser.add_argument("--workdir", default="/tmp/onenet-gallery-scale", help="index folders (deleted first)")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    faiss.omp_set_num_threads(1)  # queries on one thread (builds below set their own)
    net = OneNet.from_pretrained(args.model)
    dev, train = (representations(net, args, split) for split in ("dev", "train"))
    rng = np.random.default_rng(0)
    image_embeds = model_like(train, args.size + args.changes, rng)
    if not 1 <= args.queries <= len(dev):
        parser.error(f"--queries must be 1 to {len(dev):,} (the dev images), got {args.queries:,}")
    queries = dev[rng.choice(len(dev), args.queries, replace=False)]
    others = train_arrays(net, args, 1000)
    gallery = InjectedGallery(image_embeds, others)
    workdir = Path(args.workdir)
    if workdir.exists() and (workdir / ".onenet-gallery-scale").is_file():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".onenet-gallery-scale").write_text("bench/gallery_scale.py deletes this folder when it runs again\n")
    variances = np.linalg.eigvalsh(np.cov(train.T))[::-1]  # the real train representations' principal components
    results = {"size": args.size, "dim": image_embeds.shape[1], "queries": len(queries), "methods": {},
               "train_variance_share_in_pca": float(variances[: ann.PCA_DIMS].sum() / variances.sum())}  # fmt: skip
    sweeps = {
        "ivfpq": [{"IVF_PROBE_SHARE": p / 1024, "REFINE_FACTOR": f} for p in (64, 96, 128, 160) for f in (20, 30, 50)],
        "hnsw": [{"HNSW_SEARCH": ef} for ef in (64, 128, 256)],
        "annoy": [{"ANNOY_SEARCH_K": search_k} for search_k in (20_000, 100_000, 400_000)],
    }
    builds = [(method, method, {}) for method in args.methods]
    if args.ivfpq_variants:
        builds += [(name, "ivfpq", settings) for name, settings in IVFPQ_VARIANTS.items()]
    for number, (name, method, build_settings) in enumerate(builds):
        folder = workdir / method
        faiss.omp_set_num_threads(os.cpu_count())
        with ann_settings(build_settings):
            index, build = gallery.write(folder, range(args.size), method)
        faiss.omp_set_num_threads(1)
        row = {"build": build | {"peak_memory_gib": peak_memory_gib()}, "queries": []}
        print(f"\n{name}: built {len(index):,} in {build['seconds']:.1f} s, {build['new_file_bytes'] / 1e9:.2f} GB")
        truth, exact_seconds = exact_top(np.asarray(index.image_embeds), queries, 10)
        row["exact_ms_per_query"] = 1000 * exact_seconds
        for settings in sweeps[method]:
            row["queries"].append({"settings": settings, **query_rows(index, queries, truth, settings)})
            print(f"  {settings}: {row['queries'][-1]}")
        if method == "ivfpq" and not build_settings:
            row["query_split"] = query_split(index, queries)
        if number == 0:
            for change, rows in (
                ("add", range(args.size + args.changes)),
                ("delete", range(args.changes, args.size + args.changes)),
            ):
                index, step = gallery.write(folder, rows, method)
                shards = [(s.name, s.size, len(s.positions)) for s in index.shards]
                row[change] = step | {"images": len(index), "shards": shards}
                print(f"  {change} {args.changes:,}: {row[change]}")
            truth, _ = exact_top(np.asarray(index.image_embeds), queries, 10)
            row["queries_after_changes"] = query_rows(index, queries, truth, {})
            if method == "ivfpq":
                row["query_split_after_changes"] = query_split(index, queries)
            print(f"  after the changes: {row['queries_after_changes']}")
        results["methods"][name] = row
        del index
        shutil.rmtree(folder)
    if args.annoy_pca:
        truth, _ = exact_top(image_embeds[: args.size], queries, 10)
        results["annoy_pca_rerank"] = annoy_pca(image_embeds[: args.size], queries, truth, args.annoy_pca, 100)
        print(f"\nannoy on PCA-{args.annoy_pca} + re-rank: {results['annoy_pca_rerank']}")
    results["peak_memory_gib"] = peak_memory_gib()
    results["injected_arrays_gib"] = (image_embeds.nbytes + sum(a.nbytes for a in others.values())) / 2**30
    if args.output:
        write_json(results, Path(args.output))
    print(json.dumps({k: v for k, v in results.items() if k != "methods"}), file=sys.stderr)


if __name__ == "__main__":
    main()
