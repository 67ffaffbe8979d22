"""Approximate nearest-neighbour search over one gallery shard's image representations (cosine).

A shard's vectors never change once written, so each large shard gets one ANN file, built once; small shards
are searched exactly. `ivfpq` is the default (faiss: an inverted file of 4-bit product-quantised codes of the
vectors' first 128 principal components, scanned with SIMD, its candidates re-ranked by cosine over every
dimension from an fp16 copy of the vectors kept in the same file): on bench/speed/gallery_scale.py's 1M gallery it beat
HNSW on both latency and build time (README, "Galleries of millions"). `hnsw` (faiss) and `annoy` (the index users
know) are options.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import OneNetError

if TYPE_CHECKING:
    from .index import Shard

ANN_METHODS = ("ivfpq", "hnsw", "annoy")
IVF_LISTS = 1024  # inverted lists of a 1M shard (fewer for smaller ones: about 100 vectors a list at least)
IVF_PROBE_SHARE = 96 / 1024  # share of the lists a query scans: 96 of 1,024 chosen on the 1M bench (README)
PCA_DIMS = 128  # lists and codes live in the first 128 principal components (randomly rotated, not centred): 97% of
# the train representations' variance; a 1M query took 0.58-0.61 of the time codes of every dimension took (EPYC,
# README)
PQ_DIMS = 2  # dims per product-quantiser sub-vector, 4 bits each: 32 bytes a 128-d vector, SIMD-scanned
REFINE_FACTOR = 30  # k x this many quantised candidates are re-ranked by cosine (from the fp16 copy)
# Text queries sit apart from the images they find (the two sides of a shared space meet only roughly), so their
# neighbours spread over more lists than an image's. Chosen on the 1M bench's sweeps (text search page, runs 13, 15):
RETRIEVAL_PROBE_SHARE = 512 / 1024  # search's 100 candidates: recall@100 0.9991 with 30 x 100 re-scored (run 15)
TAG_PROBE_SHARE = 256 / 1024  # glove search's 10: recall@10 0.989 with 1,000 re-scored (run 13)
# An unrefined ivfpq file's k x this many candidates (at least RESCORED_MIN) are re-scored exactly from the shard's
# own rows, each read on its own. For search's 100 (run 19's sweep): 30 x 100 recall@100 0.9991 in 20.1 ms, 20 x 100
# 0.9979 in 13.9 ms, 10 x 100 0.9862 in 10.5 ms; the re-ranked top 10 stayed the exact pass's for 99%, 98% and 86%
# of the bench's 200 dev captions, and end to end took 105.95, 108.01 and 93.0 ms (text search page)
RESCORED_CANDIDATES = 30
RESCORED_MIN = 1000
HNSW_NEIGHBOURS = 32  # graph degree M: faiss's usual choice
HNSW_BUILD_SEARCH = 64  # efConstruction: candidates kept while inserting
HNSW_SEARCH = 256  # efSearch: 0.955 recall@10 on the 1M model-like gallery (model card)
ANNOY_TREES = 50  # 0.997 recall@10 on 1,000 images (README); more only cost time
ANNOY_SEARCH_K = 100_000  # tree nodes a query inspects: recall for time (bench/speed/gallery_scale.py's sweep)
TRAIN_SAMPLE = 100_000  # vectors k-means and the quantiser learn from


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so inner product is cosine."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def build_ann(method: str, vectors: np.ndarray, path: Path, n_trees: int = ANNOY_TREES, refine: bool = True) -> None:
    """Build the `method` index over `vectors` (rows in shard order) and write it to `path`. Without `refine`, an
    ivfpq file keeps no fp16 copy of the vectors: its candidates are re-scored from the shard's rows (`ShardAnn`),
    which halves its build time and leaves out a second copy of the array."""
    if method == "ivfpq":
        faiss = _faiss()
        lists = max(1, min(IVF_LISTS, len(vectors) // 100))
        size = vectors.shape[1]
        sample = np.sort(np.random.default_rng(0).permutation(len(vectors))[:TRAIN_SAMPLE])
        # a PCA only from at least as many rows as dimensions (faiss itself refuses fewer rows than its outputs)
        reduce = PCA_DIMS < size <= len(sample)
        reduced = PCA_DIMS if reduce else size
        codes = reduced // PQ_DIMS if reduced % PQ_DIMS == 0 else reduced
        pca = f"PCAR{reduced}," if reduce else ""
        # fp16 re-ranking copy: half the bytes of a flat one, the same recall on the 1M bench (README)
        spec = f"{pca}IVF{lists},PQ{codes}x4fs" + (",Refine(SQfp16)" if refine else "")
        index = faiss.index_factory(size, spec, faiss.METRIC_INNER_PRODUCT)
        training = unit_rows(vectors[sample])
        if reduce:
            _train_uncentred_pca(index, training, reduced)
        index.train(training)
        del training
        for start in range(0, len(vectors), 100_000):  # unit rows a block at a time: no second full copy
            index.add(unit_rows(vectors[start : start + 100_000]))
        faiss.write_index(index, str(path))
    elif method == "hnsw":
        faiss = _faiss()
        index = faiss.IndexHNSWFlat(vectors.shape[1], HNSW_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_BUILD_SEARCH
        for start in range(0, len(vectors), 100_000):  # unit rows a block at a time: no second full copy
            index.add(unit_rows(vectors[start : start + 100_000]))
        faiss.write_index(index, str(path))
    elif method == "annoy":
        from annoy import AnnoyIndex

        index = AnnoyIndex(vectors.shape[1], "angular")
        for row, vector in enumerate(vectors):
            index.add_item(row, np.asarray(vector, dtype=np.float32).tolist())
        index.build(n_trees, n_jobs=-1)
        index.save(str(path))
        index.unload()
    else:
        raise OneNetError(f"unknown ANN method {method!r}; use one of {', '.join(ANN_METHODS)}")


def _train_uncentred_pca(index, sample: np.ndarray, reduced: int) -> None:
    """Train the PCA in front of `index`'s lists and codes, then drop its centring (x -> A x, not A (x - mean)).

    Centred, the codes would rank candidates by (x - mean) . (q - mean), which adds each vector's own -x . mean to
    its score; uncentred they rank by the projected inner product, the cosine the search wants. On the 1M bench,
    96 lists probed, centred codes reached 0.9345 recall@10 with 30 x k re-ranked, uncentred 0.9520 (README)."""
    faiss = _faiss()
    transform = faiss.downcast_index(index)
    if isinstance(transform, faiss.IndexRefine):
        transform = faiss.downcast_index(transform.base_index)
    pca = faiss.downcast_VectorTransform(transform.chain.at(0))
    pca.train(sample)  # the index's train() below leaves a trained transform as it is
    faiss.copy_array_to_vector(np.zeros(reduced, dtype=np.float32), pca.b)


class ShardAnn:
    """One ANN file of a shard (over one of its arrays), opened (memory-mapped where the library can) for
    searching: opening is instant, and one-thread queries on a 1M shard were as fast as on a copy read into memory
    (a probe, README). `probe_share`: the share of an ivfpq file's lists a query scans."""

    def __init__(
        self, method: str, path: Path, size: int, array: str = "image_embeds", probe_share: float = IVF_PROBE_SHARE
    ):
        self.method, self.array, self.probe_share = method, array, probe_share
        self.refined = method != "ivfpq"  # hnsw and annoy score with the vectors themselves
        if method in ("ivfpq", "hnsw"):
            faiss = _faiss()
            self._index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # vectors paged in as used
            if method == "ivfpq":
                self._lists = faiss.extract_index_ivf(self._index).nlist
                self.refined = isinstance(faiss.downcast_index(self._index), faiss.IndexRefine)
        else:
            from annoy import AnnoyIndex

            self._index = AnnoyIndex(size, "angular")
            if not self._index.load(str(path)):
                raise OSError(f"cannot open {path.name}")

    def search(self, vector: np.ndarray, k: int, shard: Shard) -> list[tuple[int, float]]:
        """Up to k (shard position, cosine) pairs, best first, among the shard's live positions.

        An unrefined ivfpq file's candidates (k x RESCORED_CANDIDATES) are re-scored exactly from the shard's rows
        of `array`. Dead positions (deleted or changed images) are dropped from an answer fetched a little larger;
        only when they crowd it out is the search run again with them excluded inside the library, which costs
        more per query (faiss's ID filter slows its SIMD scan)."""
        vector = unit_rows(vector[None])[0]
        wanted = k if self.refined else max(RESCORED_MIN, RESCORED_CANDIDATES * k)
        if shard.live is None:
            pairs = self._candidates(vector, wanted, shard, exclude_dead=False)
        else:
            # a few more than asked, re-ranking no more candidates than k alone would (ivfpq's cost grows with them)
            fetch = math.ceil(wanted / shard.live_share) + 2
            refine = math.ceil(REFINE_FACTOR * wanted / fetch)
            pairs = self._candidates(vector, fetch, shard, exclude_dead=False, refine=refine)
            pairs = [(position, score) for position, score in pairs if shard.live[position]]
            if len(pairs) < wanted:
                pairs = self._candidates(vector, wanted, shard, exclude_dead=True)
        if not self.refined and pairs:
            positions = np.array([position for position, _ in pairs])
            scores = unit_rows(shard.read_rows(self.array, positions)) @ vector
            order = np.argsort(-scores, kind="stable")
            pairs = [(int(positions[i]), float(scores[i])) for i in order]
        return pairs[:k]

    def _candidates(
        self, vector: np.ndarray, k: int, shard: Shard, exclude_dead: bool, refine: int | None = None
    ) -> list[tuple[int, float]]:
        """The search itself; `refine`: a refined ivfpq file re-ranks k x this many quantised candidates by cosine
        (default `REFINE_FACTOR`, read at each call: bench/speed/gallery_scale.py sweeps it)."""
        if self.method == "annoy":
            dead = shard.size - len(shard.positions) if exclude_dead else 0
            positions, distances = self._index.get_nns_by_vector(
                vector.tolist(), k + dead, search_k=max(ANNOY_SEARCH_K, k + dead), include_distances=True
            )
            pairs = [(p, 1.0 - d * d / 2.0) for p, d in zip(positions, distances, strict=True)]
            return [(p, s) for p, s in pairs if not exclude_dead or shard.live[p]][:k]
        faiss = _faiss()
        selector = faiss.IDSelectorBitmap(shard.live_bitmap) if exclude_dead else None
        if self.method == "ivfpq":
            params = faiss.SearchParametersIVF(nprobe=max(1, round(self._lists * self.probe_share)), sel=selector)
            if self.refined:
                refine = REFINE_FACTOR if refine is None else refine
                params = faiss.IndexRefineSearchParameters(k_factor=refine, base_index_params=params)
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(HNSW_SEARCH, k), sel=selector)
        scores, positions = self._index.search(vector[None], k, params=params)
        keep = positions[0] >= 0
        return [(int(p), float(s)) for p, s in zip(positions[0][keep], scores[0][keep], strict=True)]


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise OneNetError("ivfpq and hnsw search need faiss: pip install faiss-cpu (or use --ann annoy)") from error
    return faiss


__all__ = ["ANN_METHODS", "ShardAnn", "build_ann", "unit_rows"]
