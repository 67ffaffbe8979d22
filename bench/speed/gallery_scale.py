"""A gallery of a million through the index's own code path: build, add 1,000, delete 1,000, query every query type.

The vectors are injected into `gallery.build.write_gallery` (the function `onenet index` calls after listing files): the
image representations, retrieval- and tag-space vectors are each a "model-like" million (bench/speed/gallery_speed.py: a
Gaussian with the mean and covariance of the train images' vectors in that space), the pooled features real rows of
the Flickr8k train images, repeated, plus noise; no image is decoded. Image queries are 200 real dev
representations (`--queries`: up to all 1,000), one at a time on one thread, timed after the shards' ANN files have
been read once (a serving process's steady state: its index in the page cache, not paged in from disk by the first
queries); recall@10 is against exact search over the same live gallery.
Per ANN method (`--methods`, the index's own: ivfpq, hnsw, annoy) it reports build time and ms/query and recall at
each setting of its sweep; for the first method also adding 1,000 files (time, bytes written, rows), deleting
1,000, and querying after. For ivfpq it also times the build and add as they were before text queries had ANN files
(the image file alone) and the upgrade of such an index, sweeps the text spaces' ANN settings, and answers every
query type (image, retrieval, reranked, glove, class-focus: `--text-queries` dev captions, `--focus-queries`
class-focused photos) in a fresh process per type, ending with one summary line per type.
`--annoy-pca` adds, outside the index, Annoy on PCA-reduced vectors with exact re-ranking of its candidates, the
variant the issue asked to compare; `--ivfpq-variants` builds and sweeps, beside the current ivfpq, the earlier one
(no PCA, 64-byte codes) and one whose PCA keeps faiss's centring.
Run: python -m bench.speed.gallery_scale --methods ivfpq --annoy-pca 0 \
    --output bench/results/gallery_scale/gallery_scale_14.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import unittest.mock
from pathlib import Path

import faiss
import numpy as np
import torch

from bench.common import ROOT, write_result
from bench.speed.gallery_speed import exact_top, model_like, representations, timed_queries
from onenet_hf import OneNet
from onenet_hf.data.datasets import read_split
from onenet_hf.data.feature_cache import DEFAULT_CACHE_DIR, cached_backbone_features
from onenet_hf.evaluation import image_inputs_from_features
from onenet_hf.gallery import ann
from onenet_hf.gallery import build as indexing
from onenet_hf.gallery.build import build_lock, write_gallery
from onenet_hf.gallery.embedding import Embedder, GalleryFile
from onenet_hf.gallery.index import GalleryIndex, top_k_pairs
from onenet_hf.language.text_encoder import encode_sentences
from onenet_hf.representations import ARRAYS
from onenet_hf.uses.search import glove_text_embeds, search
from onenet_hf.uses.similar_images import similar_images
from onenet_hf.utils.atomic_files import write_json

IVFPQ_VARIANTS = {  # name: ann-module settings its build runs under
    "ivfpq without PCA (the default until 2026-12-05)": {"PCA_DIMS": sys.maxsize, "PQ_DIMS": 4},
    "ivfpq with faiss's centred PCA": {"_uncentre": lambda pca, sample: pca.train(sample)},
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


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM): unlike ru_maxrss, not carried over from the parent that
    started it (Linux keeps ru_maxrss across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class InjectedGallery:
    """File i of the gallery holds row i of each array in `spaces` (the model-like searched spaces), its pooled
    features a real train image's (row i mod the sample) plus noise row i mod 1,009 (no two rows of a million tie
    in a class-focused search; a table, so injecting costs what it did), its content hash a hash of its name."""

    def __init__(self, spaces: dict[str, np.ndarray], pooled_features: np.ndarray):
        self.spaces, self.pooled_features = spaces, pooled_features
        self.image_embeds = spaces["image_embeds"]
        scale = 0.05 * pooled_features.astype(np.float32).std(0)
        self.noise = scale * np.random.default_rng(1).standard_normal((1009, pooled_features.shape[1]), np.float32)

    def files(self, rows) -> list[GalleryFile]:
        return [GalleryFile(f"/gallery/{i:08d}.jpg", f"/gallery/{i:08d}.jpg", 1000 + int(i), 0) for i in rows]

    def embed(self, batch: list[GalleryFile]):
        rows = np.array([int(item.key[-12:-4]) for item in batch])
        pooled = self.pooled_features[rows % len(self.pooled_features)] + self.noise[rows % len(self.noise)]
        return {name: array[rows] for name, array in self.spaces.items()} | {"pooled_features": pooled}, []

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


def warm_page_cache(folder: Path) -> None:
    """Read every shard file once, as a serving machine's page cache holds its index (read, not mapped: nothing of
    it counts in this process's memory)."""
    for file in folder.glob("shard-*"):
        with file.open("rb") as stream:
            while stream.read(1 << 24):
                pass


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
    settings (bench/speed/query_overhead.py)."""
    large = next(shard for shard in index.shards if shard.ann)
    probe = faiss.SearchParametersIVF(
        nprobe=max(1, round(large.ann_indexes["image_embeds"]._lists * ann.IVF_PROBE_SHARE))
    )
    params = faiss.IndexRefineSearchParameters(k_factor=ann.REFINE_FACTOR, base_index_params=probe)
    bare = large.ann_indexes["image_embeds"]._index  # faiss's index object: its own search, without OneNet's wrapping
    row = {
        "nearest": ms_per_query(lambda q: index.nearest(q, 10, exact=False), queries),
        "shard_ann_search": ms_per_query(lambda q: large.ann_indexes["image_embeds"].search(q, 11, large), queries),
        "faiss_search": ms_per_query(lambda q: bare.search(ann.unit_rows(q[None]), 11, params=params), queries),
    }
    gc.disable()
    try:
        row["nearest_gc_off"] = ms_per_query(lambda q: index.nearest(q, 10, exact=False), queries)
    finally:
        gc.enable()
    for small in (shard for shard in index.shards if not shard.ann):
        small_rows = small.unit_live("image_embeds")

        def exact_search(query: np.ndarray, rows: np.ndarray = small_rows) -> list:
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


QUERY_TYPES = ("image", "retrieval", "reranked", "glove", "class-focus")


def text_vectors(net: OneNet, texts: list[str]) -> dict[str, np.ndarray]:
    """Each text's query vector in the retrieval space and in the tag space, as search makes them."""
    sentences = net.model.get_retrieval_text_embeds(encode_sentences(texts, net.model.config.text_encoder_name))
    tags = glove_text_embeds(net.model, net.processor.tokenizer, texts)
    return {"retrieval_embeds": sentences.numpy(), "tag_embeds": tags.numpy()}


def serve(args: argparse.Namespace) -> None:
    """The searching process of one query type (`--serve`): load the model and the index as a server does, answer
    the queries in `queries.npz` one at a time (faiss on one thread), and write what each found, the time of each
    stage and this process's peak RSS."""
    faiss.omp_set_num_threads(1)
    torch.set_grad_enabled(False)
    folder, kind = Path(args.workdir) / "ivfpq", args.serve
    saved = np.load(Path(args.workdir) / "queries.npz")
    texts = [str(text) for text in saved["texts"]]
    net = OneNet.from_pretrained(args.model)
    index = GalleryIndex.load(folder)  # the bench's own fingerprint: OneNet.load_index would refuse it
    model, processor = net.model, net.processor
    started_rss = peak_rss_mb()
    rows: list[list[str]] = []
    stages: dict[str, list[float]] = {"end_to_end": [], "ann": [], "encode": []}
    extra: list[list[str]] = []

    def clock(stage: str, call):
        start = time.perf_counter()
        answer = call()
        stages[stage].append(1000 * (time.perf_counter() - start))
        return answer

    warm_page_cache(index.folder)
    warm = {"image": 1, "class-focus": 1}.get(kind, 3)  # the text encoder's and faiss's first calls, untimed
    if kind == "image":
        for vector in list(saved["image"][:warm]) + list(saved["image"]):
            found = clock("ann", lambda v=vector: index.nearest(v, 10)[0])
            rows.append([index.paths[row] for row, _ in found])
            stages["end_to_end"].append(stages["ann"][-1])
    elif kind == "class-focus":
        for row, imagenet_class in list(saved["focus"][:warm]) + list(saved["focus"]):
            found = clock("end_to_end", lambda r=int(row), c=int(imagenet_class): similar_images(
                model, processor, index, r, 10, focus_class=c))  # fmt: skip
            rows.append([match.path for match in found])
    else:
        array = "tag_embeds" if kind == "glove" else "retrieval_embeds"
        method = {"retrieval": "retrieval", "reranked": "reranked", "glove": "glove"}[kind]
        candidates = 100 if kind == "reranked" else 10
        for text in texts[:warm] + texts:  # end to end first, then the stages: no query right after itself
            matches = clock("end_to_end", lambda t=text: search(model, processor, index, t, 10, method))
            extra.append([match.path for match in matches])
        for text in texts[:warm] + texts:
            vector = clock("encode", lambda t=text: _one_vector(net, t, array))
            found = clock("ann", lambda v=vector: index.nearest(v, candidates, array=array)[0])
            rows.append([index.paths[row] for row, _ in found])
    skip = warm
    result = {
        "type": kind,
        "found": rows[skip:],
        "search_found": extra[skip:],
        "ms": {stage: times[skip:] for stage, times in stages.items() if times},
        "rss_after_load_mb": started_rss,
        "peak_rss_mb": peak_rss_mb(),
    }
    write_json(result, Path(args.workdir) / f"served-{kind}.json")


def _one_vector(net: OneNet, text: str, array: str) -> np.ndarray:
    """One text's query vector in `array`'s space, as search makes it (the text encoder, or GloVe and the tag head)."""
    if array == "tag_embeds":
        return glove_text_embeds(net.model, net.processor.tokenizer, [text])[0].numpy()
    return net.model.get_retrieval_text_embeds(encode_sentences([text], net.model.config.text_encoder_name))[0].numpy()


def exact_search(index: GalleryIndex, units: dict[str, np.ndarray]) -> GalleryIndex:
    """`index` whose nearest() is exact over `units` (each searched array joined at unit length, once): search()
    through it is the exact pass a query type is compared with."""

    def nearest(vectors, k, exact=None, exclude=(), array="image_embeds"):
        return [top_k_pairs(units[array] @ ann.unit_rows(v[None])[0], k) for v in np.atleast_2d(vectors)]

    exact = copy.copy(index)
    exact.nearest = nearest
    return exact


def query_truths(
    net: OneNet, index: GalleryIndex, units: dict[str, np.ndarray], args: argparse.Namespace, image_queries: np.ndarray
) -> dict:
    """The queries of every type (saved for the searching processes) and the exact pass's answers to them."""
    rng = np.random.default_rng(1)
    dev = read_split(args.data_dir, "dev")
    texts = [dev[i].captions[0] for i in rng.choice(len(dev), args.text_queries, replace=False)]
    focus_rows = rng.choice(len(index), args.focus_queries, replace=False)
    pooled = index.rows("pooled_features", focus_rows)
    classes = net.model.get_imagenet_logits(torch.from_numpy(pooled)).argmax(-1).numpy()  # each photo's own top class
    np.savez(Path(args.workdir) / "queries.npz", texts=np.array(texts), image=image_queries,
             focus=np.stack([focus_rows, classes], 1))  # fmt: skip
    vectors = text_vectors(net, texts)
    exact_index = exact_search(index, units)
    truth = {
        "image": exact_index.nearest(image_queries, 10),
        "retrieval": exact_index.nearest(vectors["retrieval_embeds"], 10, array="retrieval_embeds"),
        "reranked": exact_index.nearest(vectors["retrieval_embeds"], 100, array="retrieval_embeds"),
        "glove": exact_index.nearest(vectors["tag_embeds"], 10, array="tag_embeds"),
    }
    truth = {kind: [[index.paths[row] for row, _ in found] for found in answers] for kind, answers in truth.items()}
    for kind in ("retrieval", "reranked", "glove"):  # search() itself, its candidates exact
        truth[f"{kind}_search"] = [
            [match.path for match in search(net.model, net.processor, exact_index, text, 10, kind)] for text in texts
        ]
    truth["class-focus"] = []  # the formula before scan(), over the joined array (100,000 rows at a time here)
    for row, imagenet_class in zip(focus_rows, classes, strict=True):
        weights = net.model.get_class_focus_weights(int(imagenet_class)).float().numpy()
        focused = ann.unit_rows((index.rows("pooled_features", [row])[0] * weights)[None])[0]
        scores = np.concatenate([
            ann.unit_rows(np.asarray(index.pooled_features[start : start + 100_000], dtype=np.float32) * weights)
            @ focused
            for start in range(0, len(index), 100_000)
        ])  # fmt: skip
        truth["class-focus"].append([index.paths[i] for i, _ in top_k_pairs(scores, 10, int(row))])
    return truth


def query_types(truth: dict, args: argparse.Namespace) -> dict:
    """Every query type against the live gallery: each answered by its own fresh process (`serve`), compared with
    the exact pass (`query_truths`); one summary line per type."""
    summary = {}
    for kind in args.query_types:
        command = [
            sys.executable,
            "-m",
            __spec__.name,
            "--serve",
            kind,
            "--workdir",
            args.workdir,
            "--model",
            args.model,
        ]
        subprocess.run(command, check=True, cwd=ROOT)
        served = json.loads((Path(args.workdir) / f"served-{kind}.json").read_text())
        k = 100 if kind == "reranked" else 10
        recall = np.mean([len(set(f) & set(t)) / k for f, t in zip(served["found"], truth[kind], strict=True)])
        row = {"recall@10" if k == 10 else "candidate_recall@100": float(recall), "peak_rss_mb": served["peak_rss_mb"],
               "rss_after_load_mb": served["rss_after_load_mb"]}  # fmt: skip
        for stage, times in served["ms"].items():
            row[f"{stage}_ms_mean"], row[f"{stage}_ms_p50"] = float(np.mean(times)), float(np.median(times))
        if f"{kind}_search" in truth:
            pairs = zip(served["search_found"], truth[f"{kind}_search"], strict=True)
            row["same_top10_as_exact_share"] = float(np.mean([set(f) == set(t) for f, t in pairs]))
        summary[kind] = row
    for kind, row in summary.items():  # one line per query type, in one form, for readers and scripts
        recall = row.get("recall@10", row.get("same_top10_as_exact_share"))
        ann_ms = row.get("ann_ms_mean", row["end_to_end_ms_mean"])
        print(f"{kind}: recall@10 {recall:.3f} at {ann_ms:.2f} ms/query, end to end {row['end_to_end_ms_p50']:.0f} ms, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB")  # fmt: skip
    return summary


TEXT_SWEEP = {  # (array, k): the settings tried; k 100 is what `reranked` and `retrieval` fetch, k 10 `glove`'s
    ("retrieval_embeds", 100): [{"probes": p, "RESCORED_PER_RESULT": r} for p in (256, 384, 512) for r in (1, 2, 3)],
    ("retrieval_embeds", 10): [{"probes": p, "CANDIDATES_MIN": c} for p in (64, 128, 256) for c in (300, 1000)],
    ("tag_embeds", 10): [
        {"probes": p, "CANDIDATES_MIN": c, "RESCORED_MIN": r} for p in (128, 256) for c in (500, 1000) for r in (20, 50)
    ],  # fmt: skip
}


def sweep_truths(net: OneNet, units: dict[str, np.ndarray], index: GalleryIndex, args: argparse.Namespace) -> dict:
    """The text sweep's queries (other dev captions than the query types') and their exact top k."""
    rng = np.random.default_rng(2)
    dev = read_split(args.data_dir, "dev")
    texts = [dev[i].captions[1] for i in rng.choice(len(dev), args.text_queries, replace=False)]
    vectors = text_vectors(net, texts)
    exact = exact_search(index, units)
    truths = {}
    for array, k in TEXT_SWEEP:
        found = exact.nearest(vectors[array], k, array=array)
        truths[array, k] = vectors[array], np.array([[row for row, _ in pairs] for pairs in found])
    return truths


def text_sweep(index: GalleryIndex, truths: dict) -> list[dict]:
    """Recall@k and one-thread ms/query of the text spaces' ANN stage per probe count (of 1,024 lists) and re-scored
    candidates: what SEARCH_ARRAYS' probe shares and the ann module's candidate and re-scored counts came from."""
    rows, large = [], [shard for shard in index.shards if shard.ann]
    for (array, k), (queries, truth) in truths.items():
        for settings in TEXT_SWEEP[array, k]:
            constants = {name: value for name, value in settings.items() if name != "probes"}
            for shard in large:
                shard.ann_indexes[array].probe_share = settings["probes"] / 1024
            with ann_settings(constants):
                search = lambda q, k, a=array: [r for r, _ in index.nearest(q, k, exact=False, array=a)[0]]  # noqa: E731
                timed = timed_queries(search, queries, truth, k)
            rows.append({"array": array, "k": k, **settings, "ms_per_query": timed["ms_per_query"],
                         f"recall@{k}": timed["recall@10"]})  # fmt: skip
            print(f"  {rows[-1]}")
        for shard in large:
            shard.ann_indexes[array].probe_share = indexing.SEARCH_ARRAYS[array]
    return rows


def baseline_build(gallery: InjectedGallery, workdir: Path, args: argparse.Namespace) -> dict:
    """Build and add as before text queries had ANN files (the image representations' alone), then upgrade that
    index as `onenet index` does (the text spaces' files from the stored rows); times in the same run as the
    current build's."""
    folder, timings = workdir / "before-text-ann", {}
    faiss.omp_set_num_threads(os.cpu_count())
    with unittest.mock.patch.object(indexing, "SEARCH_ARRAYS", {"image_embeds": ann.IVF_PROBE_SHARE}):
        _, timings["build"] = gallery.write(folder, range(args.size), "ivfpq")
        _, timings["add"] = gallery.write(folder, range(args.size + args.changes), "ivfpq")
    index, timings["upgrade"] = gallery.write(folder, range(args.size + args.changes), "ivfpq")
    timings["upgraded_ann_arrays"] = list(index.metadata["ann_arrays"])
    faiss.omp_set_num_threads(1)
    del index
    shutil.rmtree(folder)
    print(f"before text ANN files: build {timings['build']['seconds']:.1f} s, add {timings['add']['seconds']:.1f} s, "
          f"upgrade {timings['upgrade']['seconds']:.1f} s")  # fmt: skip
    return timings


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
    parser.add_argument("--text-queries", type=int, default=200, help="dev captions each text query type answers")
    parser.add_argument("--focus-queries", type=int, default=20, help="class-focused queries (each an exact pass)")
    parser.add_argument("--query-types", nargs="+", default=list(QUERY_TYPES), choices=QUERY_TYPES)
    parser.add_argument("--serve", choices=QUERY_TYPES, help=argparse.SUPPRESS)  # the searching process
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args()
    if args.serve:
        return serve(args)
    torch.set_grad_enabled(False)
    faiss.omp_set_num_threads(1)  # queries on one thread (builds below set their own)
    net = OneNet.from_pretrained(args.model)
    dev, train = (representations(net, args, split) for split in ("dev", "train"))
    rng = np.random.default_rng(0)
    image_embeds = model_like(train, args.size + args.changes, rng)
    if not 1 <= args.queries <= len(dev):
        parser.error(f"--queries must be 1 to {len(dev):,} (the dev images), got {args.queries:,}")
    queries = dev[rng.choice(len(dev), args.queries, replace=False)]
    others = train_arrays(net, args, len(train))
    spaces = {"image_embeds": image_embeds} | {
        name: model_like(others[name], args.size + args.changes, rng) for name in ("retrieval_embeds", "tag_embeds")
    }
    gallery = InjectedGallery(spaces, others["pooled_features"][:1000])
    workdir = Path(args.workdir)
    if workdir.exists() and (workdir / ".onenet-gallery-scale").is_file():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / ".onenet-gallery-scale").write_text(
        "bench/speed/gallery_scale.py deletes this folder when it runs again\n"
    )
    variances = np.linalg.eigvalsh(np.cov(train.T))[::-1]  # the real train representations' principal components
    results = {"size": args.size, "dim": image_embeds.shape[1], "queries": len(queries), "methods": {},
               "train_variance_share_in_pca": float(variances[: ann.PCA_DIMS].sum() / variances.sum())}  # fmt: skip
    results["before_text_ann"] = baseline_build(gallery, workdir, args) if "ivfpq" in args.methods else None
    sweeps = {
        "ivfpq": [{"IVF_PROBE_SHARE": p / 1024, "REFINE_FACTOR": f} for p in (64, 96, 128, 160) for f in (20, 30, 50)],
        "hnsw": [{"HNSW_SEARCH": ef} for ef in (64, 128, 256)],
        "annoy": [{"ANNOY_SEARCH_K": search_k} for search_k in (20_000, 100_000, 400_000)],
    }
    builds = [(method, method, {}) for method in args.methods]
    kept: tuple[Path | None, dict] = (None, {})  # the ivfpq index the text queries search, and its results row
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
            if method == "ivfpq":  # the exact answers now; the searches once the big arrays here are freed
                units = {name: ann.unit_rows(index._arrays[name]) for name in indexing.SEARCH_ARRAYS}
                text_truths = sweep_truths(net, units, index, args), query_truths(net, index, units, args, queries)
                del units
                kept = folder, row
        results["methods"][name] = row
        del index
        if folder != kept[0]:
            shutil.rmtree(folder)
    if args.annoy_pca:
        truth, _ = exact_top(image_embeds[: args.size], queries, 10)
        results["annoy_pca_rerank"] = annoy_pca(image_embeds[: args.size], queries, truth, args.annoy_pca, 100)
        print(f"\nannoy on PCA-{args.annoy_pca} + re-rank: {results['annoy_pca_rerank']}")
    results["peak_memory_gib"] = peak_memory_gib()
    results["injected_arrays_gib"] = sum(a.nbytes for a in [*spaces.values(), gallery.pooled_features]) / 2**30
    if kept[0] is not None:  # the text queries, with this process's injected vectors freed: a serving machine's
        del spaces, image_embeds, gallery  # page cache holds the index files, not the bench's copies
        gc.collect()
        warm_page_cache(kept[0])
        kept[1]["text_sweep"] = text_sweep(GalleryIndex.load(kept[0]), text_truths[0])
        results["query_types"] = query_types(text_truths[1], args)
        shutil.rmtree(kept[0])
    if args.output:
        write_result(results, Path(args.output))
    print(json.dumps({k: v for k, v in results.items() if k != "methods"}), file=sys.stderr)


if __name__ == "__main__":
    main()
