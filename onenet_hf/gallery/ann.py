"""Approximate nearest-neighbour search over one gallery shard's image representations (cosine).

A shard's vectors never change once written, so each large shard gets one ANN file, built once; small shards
are searched exactly. `ivfpq` is the default (faiss: an inverted file of 4-bit product-quantised codes of the
vectors' first 128 principal components, scanned with SIMD, its candidates re-ranked by cosine over every
dimension from an fp16 copy of the vectors kept in the same file): on bench/speed/gallery_scale.py's 1M gallery it beat
HNSW on both latency and build time (README, "Galleries of millions"). `hnsw` (faiss) and `annoy` (the index users
know) are options. The text spaces' ivfpq files keep a 6-bit copy of the principal components instead of the fp16
vectors (96 bytes a vector, not 1,024): it picks the few candidates then re-scored exactly from the shard's rows.
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
RETRIEVAL_PROBE_SHARE = 512 / 1024  # search's 100 candidates: recall@100 0.9990 with 2 x 100 re-scored (run 20)
TAG_PROBE_SHARE = 256 / 1024  # glove search's 10: recall@10 0.9880 with 50 of 1,000 re-scored (run 20)
# A text file's 4-bit codes give k x CANDIDATES_PER_RESULT candidates (at least CANDIDATES_MIN); its 6-bit copy of the
# components keeps k x RESCORED_PER_RESULT of them (at least RESCORED_MIN), re-scored exactly from the shard's own
# rows, each read on its own (about 2 us a row). An older text file without the 6-bit copy re-scores every candidate.
CANDIDATES_PER_RESULT = 30
CANDIDATES_MIN = 1000
RESCORED_PER_RESULT = 2
RESCORED_MIN = 50
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


def build_ann(
    method: str, vectors: np.ndarray, path: Path, n_trees: int = ANNOY_TREES, refine: str = "vectors"
) -> None:
    """Build the `method` index over `vectors` (rows in shard order) and write it to `path`. An ivfpq file re-ranks
    its candidates from a copy kept inside it, `refine`: "vectors" (fp16, every dimension: its order is the
    answer) or "components" (6-bit, the principal components: its order picks the candidates `ShardAnn` re-scores
    from the shard's rows), 96 bytes a vector where an fp16 copy of a 512-d array takes 1,024."""
    if method == "ivfpq":
        faiss = _faiss()
        lists = max(1, min(IVF_LISTS, len(vectors) // 100))
        size = vectors.shape[1]
        sample = np.sort(np.random.default_rng(0).permutation(len(vectors))[:TRAIN_SAMPLE])
        # a PCA only from at least as many rows as dimensions (faiss itself refuses fewer rows than its outputs)
        reduce = PCA_DIMS < size <= len(sample)
        reduced = PCA_DIMS if reduce else size
        codes = reduced // PQ_DIMS if reduced % PQ_DIMS == 0 else reduced
        training = unit_rows(vectors[sample])
        if refine == "vectors":
            # fp16 re-ranking copy: half the bytes of a flat one, the same recall on the 1M bench (README)
            spec = (f"PCAR{reduced}," if reduce else "") + f"IVF{lists},PQ{codes}x4fs,Refine(SQfp16)"
            index = faiss.index_factory(size, spec, faiss.METRIC_INNER_PRODUCT)
            if reduce:
                _uncentre(_inner_pca(index), training)
        elif refine == "components":
            index = faiss.index_factory(reduced, f"IVF{lists},PQ{codes}x4fs,Refine(SQ6)", faiss.METRIC_INNER_PRODUCT)
            if reduce:
                pca = faiss.PCAMatrix(size, reduced, 0, True)
                _uncentre(pca, training)
                index = faiss.IndexPreTransform(pca, index)
        else:
            raise OneNetError(f"unknown ANN copy {refine!r}; use vectors or components")
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


def _inner_pca(index):
    """The PCA in front of a factory-made "PCAR...,IVF...,Refine(...)" index's lists and codes."""
    faiss = _faiss()
    transform = faiss.downcast_index(faiss.downcast_index(index).base_index)
    return faiss.downcast_VectorTransform(transform.chain.at(0))


def _uncentre(pca, sample: np.ndarray) -> None:
    """Train `pca` on `sample`, then drop its centring (x -> A x, not A (x - mean)).

    Centred, the codes would rank candidates by (x - mean) . (q - mean), which adds each vector's own -x . mean to
    its score; uncentred they rank by the projected inner product, the cosine the search wants. On the 1M bench,
    96 lists probed, centred codes reached 0.9345 recall@10 with 30 x k re-ranked, uncentred 0.9520 (README)."""
    pca.train(sample)  # the index's train() leaves a trained transform as it is
    _faiss().copy_array_to_vector(np.zeros(pca.d_out, dtype=np.float32), pca.b)


class ShardAnn:
    """One ANN file of a shard (over one of its arrays), opened (memory-mapped where the library can) for
    searching: opening is instant, and one-thread queries on a 1M shard were as fast as on a copy read into memory
    (a probe, README). `probe_share`: the share of an ivfpq file's lists a query scans."""

    def __init__(
        self, method: str, path: Path, size: int, array: str = "image_embeds", probe_share: float = IVF_PROBE_SHARE
    ):
        self.method, self.array, self.probe_share = method, array, probe_share
        self.refine = "vectors"  # hnsw and annoy score with the vectors themselves
        if method in ("ivfpq", "hnsw"):
            faiss = _faiss()
            self._index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # vectors paged in as used
            if method == "ivfpq":
                self._lists = faiss.extract_index_ivf(self._index).nlist
                self.refine = _refine_copy(self._index)
        else:
            from annoy import AnnoyIndex

            self._index = AnnoyIndex(size, "angular")
            if not self._index.load(str(path)):
                raise OSError(f"cannot open {path.name}")

    def search(self, vector: np.ndarray, k: int, shard: Shard) -> list[tuple[int, float]]:
        """Up to k (shard position, cosine) pairs, best first, among the shard's live positions.

        Unless the file re-ranks with the vectors themselves, its candidates are re-scored exactly from the shard's
        rows of `array`: those its 6-bit copy of the components keeps (k x RESCORED_PER_RESULT, at least
        RESCORED_MIN), or every one of an older file without it (k x CANDIDATES_PER_RESULT, at least
        CANDIDATES_MIN). Dead positions (deleted or changed images) are dropped from an answer fetched a little
        larger; only when they crowd it out is the search run again with them excluded inside the library, which
        costs more per query (faiss's ID filter slows its SIMD scan)."""
        vector = unit_rows(vector[None])[0]
        # (answers wanted from faiss, quantised candidates its copy ranks to give them)
        quantised = max(CANDIDATES_MIN, CANDIDATES_PER_RESULT * k)
        wanted, candidates = {
            "vectors": (k, REFINE_FACTOR * k),
            "components": (max(RESCORED_MIN, RESCORED_PER_RESULT * k), quantised),
            None: (quantised, quantised),
        }[self.refine]
        if shard.live is None:
            pairs = self._candidates(vector, wanted, shard, exclude_dead=False, candidates=candidates)
        else:
            # a few more than asked, from as many quantised candidates as k alone takes (ivfpq's cost grows with them)
            fetch = math.ceil(wanted / shard.live_share) + 2
            pairs = self._candidates(vector, fetch, shard, exclude_dead=False, candidates=max(candidates, fetch))
            pairs = [(position, score) for position, score in pairs if shard.live[position]]
            if len(pairs) < wanted:
                pairs = self._candidates(vector, wanted, shard, exclude_dead=True, candidates=candidates)
        if self.refine != "vectors" and pairs:
            positions = np.array([position for position, _ in pairs])
            scores = unit_rows(shard.read_rows(self.array, positions)) @ vector
            order = np.argsort(-scores, kind="stable")
            pairs = [(int(positions[i]), float(scores[i])) for i in order]
        return pairs[:k]

    def _candidates(
        self, vector: np.ndarray, k: int, shard: Shard, exclude_dead: bool, candidates: int
    ) -> list[tuple[int, float]]:
        """The search itself; an ivfpq file with a copy ranks this many quantised `candidates` by it for its k
        (constants read at each call: bench/speed/gallery_scale.py sweeps them)."""
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
            if self.refine:
                # faiss takes k x k_factor (a float32) as the count: half a candidate over it, never one short
                factor = max((candidates + 0.5) / k, 1.0)
                params = faiss.IndexRefineSearchParameters(k_factor=factor, base_index_params=params)
        else:
            params = faiss.SearchParametersHNSW(efSearch=max(HNSW_SEARCH, k), sel=selector)
        scores, positions = self._index.search(vector[None], k, params=params)
        keep = positions[0] >= 0
        return [(int(p), float(s)) for p, s in zip(positions[0][keep], scores[0][keep], strict=True)]


def _refine_copy(index) -> str | None:
    """What an ivfpq file re-ranks its candidates with: "vectors" (an fp16 copy wrapping the whole search),
    "components" (an 6-bit copy behind the PCA), or None (an older text file: no copy)."""
    faiss = _faiss()
    outer = faiss.downcast_index(index)
    if isinstance(outer, faiss.IndexPreTransform):
        return "components" if isinstance(faiss.downcast_index(outer.index), faiss.IndexRefine) else None
    if not isinstance(outer, faiss.IndexRefine):
        return None
    copy = faiss.downcast_index(outer.refine_index)  # fp16 now; flat in files of early December 2026
    quantised = isinstance(copy, faiss.IndexScalarQuantizer) and copy.sq.qtype != faiss.ScalarQuantizer.QT_fp16
    return "components" if quantised else "vectors"


def _faiss():
    try:
        import faiss
    except ImportError as error:
        raise OneNetError("ivfpq and hnsw search need faiss: pip install faiss-cpu (or use --ann annoy)") from error
    return faiss


__all__ = ["ANN_METHODS", "ShardAnn", "build_ann", "unit_rows"]
