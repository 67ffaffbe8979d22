"""Per-shard ANN search (ann.py) through the index's own write path, with vectors injected as the scale bench does."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from onenet_hf.gallery import ann as ann_module
from onenet_hf.gallery import build as indexing
from onenet_hf.gallery import index as gallery_module
from onenet_hf.gallery.ann import ANN_METHODS
from onenet_hf.gallery.build import build_lock, write_gallery
from onenet_hf.gallery.embedding import Embedder, GalleryFile
from onenet_hf.gallery.index import SEARCH_ARRAYS, GalleryIndex, ann_files, connect
from onenet_hf.representations import ARRAYS

SIZE, DIM = 3000, 32


def _vectors(rng: np.random.Generator) -> np.ndarray:
    """Clustered unit vectors: 30 centres, each with 100 noisy copies."""
    centres = rng.standard_normal((30, DIM)).astype(np.float32)
    rows = np.repeat(centres, SIZE // 30, axis=0) + 0.5 * rng.standard_normal((SIZE, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _write(folder, vectors: np.ndarray, keep: np.ndarray, ann: str, others: dict[str, np.ndarray] | None = None):
    """The gallery of rows `keep` (file i holds row i), through write_gallery with injected vectors: `vectors` in
    every array, or `others` in the arrays it names."""
    files = [GalleryFile(f"/gallery/{i:05d}.jpg", f"/gallery/{i:05d}.jpg", 1000 + int(i), 0) for i in keep]
    arrays = {name: vectors for name in ARRAYS} | (others or {})

    def embed(batch):
        rows = [int(item.key[-9:-4]) for item in batch]
        embedded = {name: arrays[name][rows] for name in ARRAYS}
        return embedded | {"pooled_features": embedded["pooled_features"].astype(np.float16)}, []

    def content_hash(path: str) -> str:
        return hashlib.sha256(path.encode()).hexdigest()

    with build_lock(folder, 0):
        return write_gallery(folder, "test-model", DIM, files, [], Embedder(list, embed), content_hash, 512, ann)


def _pca_dims(index) -> int | None:
    """The output size of the PCA a faiss ivfpq index searches in (None when it has none); the PCA must not centre
    (zero bias: x -> A x) and the re-ranking copy must keep every dimension."""
    import faiss

    refine = faiss.downcast_index(index)  # re-ranking wraps the whole search, PCA included
    assert isinstance(refine, faiss.IndexRefine) and faiss.downcast_index(refine.refine_index).d == DIM
    base = faiss.downcast_index(refine.base_index)
    if not isinstance(base, faiss.IndexPreTransform):
        return None
    pca = faiss.downcast_VectorTransform(base.chain.at(0))
    assert not faiss.vector_to_array(pca.b).any()
    return pca.d_out


@pytest.mark.parametrize(
    ("ann", "pca_dims"), [(method, None) for method in ANN_METHODS] + [("ivfpq", 16)], ids=[*ANN_METHODS, "ivfpq-pca"]
)
def test_each_method_finds_the_exact_neighbours_and_never_a_dropped_row(tmp_path, monkeypatch, ann, pca_dims):
    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)  # a 3,000-row shard gets its ANN file
    if pca_dims:  # the representation (32-d here) is larger than the PCA's output, as 512 is on 128
        monkeypatch.setattr(ann_module, "PCA_DIMS", pca_dims)
    rng = np.random.default_rng(0)
    vectors = _vectors(rng)
    index = _write(tmp_path / "index", vectors, np.arange(SIZE), ann)
    assert [(s.size, s.ann) for s in index.shards] == [(SIZE, ann)]
    if ann == "ivfpq":
        assert _pca_dims(index.shards[0].ann_indexes["image_embeds"]._index) == pca_dims
    queries = vectors[rng.choice(SIZE, 50, replace=False)] + 0.1 * rng.standard_normal((50, DIM)).astype(np.float32)

    def recall(index) -> float:
        exact = index.nearest(queries, 10, exact=True)
        approximate = index.nearest(queries, 10, exact=False)
        return np.mean(
            [len({r for r, _ in a} & {r for r, _ in e}) / 10 for a, e in zip(approximate, exact, strict=True)]
        )

    assert recall(index) >= 0.9
    kept = np.setdiff1d(np.arange(SIZE), np.arange(0, SIZE, 7))  # drop every 7th file: dead rows in the shard
    index = _write(tmp_path / "index", vectors, kept, ann)
    assert len(index) == len(kept) and index.shards[0].size == SIZE  # under the dead share: not rewritten
    assert recall(index) >= 0.9
    shard = index.shards[0]
    for query in queries:  # the shard's own answers, before rows are mapped: never a dead position
        positions = [position for position, _ in shard.ann_indexes["image_embeds"].search(query, 10, shard)]
        assert len(positions) == 10 and shard.live[positions].all()
    kept = np.arange(90, SIZE)  # 90 of cluster 0's 100 rows gone: a query there finds mostly dead candidates
    index = _write(tmp_path / "index", vectors, kept, ann)
    assert index.shards[0].size == SIZE and len(index) == SIZE - 90
    centre = vectors[:100].mean(0)
    approximate = [index.paths[row] for row, _ in index.nearest(centre, 10, exact=False)[0]]
    exact = [index.paths[row] for row, _ in index.nearest(centre, 10, exact=True)[0]]
    assert len(approximate) == 10 and len(set(approximate) & set(exact)) >= 9
    assert all(90 <= int(path[-9:-4]) < 100 for path in exact)  # the ten survivors of cluster 0
    positions = [
        position for position, _ in index.shards[0].ann_indexes["image_embeds"].search(centre, 10, index.shards[0])
    ]
    assert index.shards[0].live[positions].all()


def test_ivfpq_skips_the_pca_when_a_shard_has_fewer_rows_than_dimensions(tmp_path, monkeypatch):
    import faiss

    monkeypatch.setattr(ann_module, "PCA_DIMS", 16)
    vectors = _vectors(np.random.default_rng(2))
    for rows, pca_dims in ((DIM - 1, None), (DIM, 16)):  # a PCA only from at least as many rows as dimensions
        ann_module.build_ann("ivfpq", vectors[:rows], tmp_path / f"{rows}.ivfpq")
        index = faiss.read_index(str(tmp_path / f"{rows}.ivfpq"))
        assert _pca_dims(index) == pca_dims
        _, found = index.search(vectors[:1], 1)
        assert found[0][0] == 0


def test_replaced_shards_lose_their_ann_files_and_an_open_index_keeps_searching(tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)
    vectors = _vectors(np.random.default_rng(1))
    opened = _write(tmp_path / "index", vectors, np.arange(SIZE), "ivfpq")
    old = {p.name for p in (tmp_path / "index").iterdir() if p.name.startswith("shard-")}
    assert any(name.endswith(".ivfpq") for name in old)
    rewritten = _write(tmp_path / "index", vectors, np.arange(SIZE // 2), "ivfpq")  # half dead: rewritten
    assert rewritten.shards[0].name != opened.shards[0].name
    assert not old & {p.name for p in (tmp_path / "index").iterdir()}  # the old arrays and .ivfpq file are gone
    assert len(opened.nearest(vectors[:3], 5, exact=False)[0]) == 5  # opened before: its files stay mapped
    changed = _write(tmp_path / "index", vectors, np.arange(SIZE // 2), "annoy")  # another method: a new ANN file
    assert {p.suffix for p in (tmp_path / "index").iterdir() if p.name.startswith("shard-")} == {".npy", ".annoy"}
    assert changed.shards[0].ann == "annoy"


KILLED_BUILD = """
import sys, time
import numpy as np
from onenet_hf.gallery.index import SEARCH_ARRAYS, GalleryIndex, ann_files, connect
from onenet_hf.representations import ARRAYS
from onenet_hf.gallery.build import build_lock, write_gallery
from onenet_hf.gallery.embedding import Embedder, GalleryFile
folder, marker = sys.argv[1], sys.argv[2]
files = [GalleryFile(f"/gallery/{i:05d}.jpg", f"/gallery/{i:05d}.jpg", 1, 0) for i in range(200)]
calls = []
def embed(batch):
    calls.append(1)
    if len(calls) == 2:
        open(marker, "w").close()  # the first batch's rows are in the new shard's files: kill now
        time.sleep(60)
    return {name: np.ones((len(batch), 32), dtype=np.float16 if name == "pooled_features" else np.float32)
            for name in ARRAYS}, []
with build_lock(folder, 0):
    write_gallery(folder, "test-model", 32, files, [], Embedder(list, embed), lambda path: path, 50)
"""


def test_a_build_killed_with_sigkill_leaves_the_previous_index_and_its_lock_free(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    vectors = _vectors(np.random.default_rng(0))
    before = _write(tmp_path / "index", vectors, np.arange(100), "ivfpq")
    names = {p.name for p in (tmp_path / "index").iterdir()}
    marker = tmp_path / "killed-now"
    process = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tmp_path / "index"), str(marker)])
    deadline = time.monotonic() + 120
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the build never reached its second batch"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    after = GalleryIndex.load(tmp_path / "index")
    assert after.paths == before.paths and np.array_equal(after.image_embeds, before.image_embeds)
    orphans = {p.name for p in (tmp_path / "index").iterdir() if p.name.startswith("shard-")} - names
    assert len(orphans) == 4  # the killed build's new shard, listed nowhere
    again = _write(tmp_path / "index", vectors, np.arange(100), "ivfpq")  # the lock died with the process
    assert again.paths == before.paths and not orphans & {p.name for p in (tmp_path / "index").iterdir()}


def _text_spaces(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Retrieval- and tag-space vectors unlike the image representations (their own clusters)."""
    return {"retrieval_embeds": _vectors(rng), "tag_embeds": _vectors(rng)}


def _recall(index, queries: np.ndarray, array: str) -> float:
    exact = index.nearest(queries, 10, exact=True, array=array)
    approximate = index.nearest(queries, 10, exact=False, array=array)
    return np.mean([len({r for r, _ in a} & {r for r, _ in e}) / 10 for a, e in zip(approximate, exact, strict=True)])


def test_text_spaces_get_their_own_ann_files_whose_candidates_are_rescored_exactly(tmp_path, monkeypatch):
    import faiss

    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)
    monkeypatch.setattr(ann_module, "PCA_DIMS", 16)  # as 128 of 512: the files' layout with their PCA
    rng = np.random.default_rng(3)
    vectors, spaces = _vectors(rng), _text_spaces(rng)
    kept = np.setdiff1d(np.arange(SIZE), np.arange(0, SIZE, 7))  # dead rows too
    _write(tmp_path / "index", vectors, np.arange(SIZE), "ivfpq", spaces)
    index = _write(tmp_path / "index", vectors, kept, "ivfpq", spaces)
    shard = index.shards[0]
    assert shard.size == SIZE and set(shard.ann_indexes) == set(SEARCH_ARRAYS)
    assert all((tmp_path / "index" / file).is_file() for file in ann_files(shard.name, "ivfpq").values())
    for array, ann in shard.ann_indexes.items():  # the image side keeps fp16 vectors, the text sides 6-bit components
        outer = faiss.downcast_index(ann._index)
        if array == "image_embeds":  # the copy re-ranks the whole search, over every dimension
            copy, width = faiss.downcast_index(outer.refine_index), DIM
        else:  # the copy sits behind the PCA, over its components
            assert (
                isinstance(outer, faiss.IndexPreTransform)
                and not faiss.vector_to_array(faiss.downcast_VectorTransform(outer.chain.at(0)).b).any()
            )
            copy, width = faiss.downcast_index(faiss.downcast_index(outer.index).refine_index), 16
        quantizer = faiss.ScalarQuantizer
        assert ann.refine == ("vectors" if array == "image_embeds" else "components") and copy.d == width
        assert copy.sq.qtype == (quantizer.QT_fp16 if array == "image_embeds" else quantizer.QT_6bit)
    for array, space in spaces.items():
        queries = space[rng.choice(SIZE, 50, replace=False)] + 0.1 * rng.standard_normal((50, DIM)).astype(np.float32)
        assert _recall(index, queries, array) >= 0.95
        units = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        for query, found in zip(units, index.nearest(queries, 10, exact=False, array=array), strict=True):
            rows = [row for row, _ in found]
            assert all(int(index.paths[row][-9:-4]) in set(kept) for row in rows)
            exact = index.rows(array, rows) @ query  # the scores are the exact cosines, not the quantised ones
            assert [score for _, score in found] == pytest.approx(exact.tolist(), abs=1e-5)


def _rows_rescored(index, queries: np.ndarray, units: np.ndarray, monkeypatch) -> set[int]:
    """How many rows each retrieval query re-scored from the shard, checking the answers' recall on the way."""
    rescored = []
    monkeypatch.setattr(index.shards[0], "read_rows", lambda array, rows: rescored.append(len(rows)) or units[rows])
    assert _recall(index, queries, "retrieval_embeds") >= 0.95
    return set(rescored)


def test_a_text_file_without_a_copy_as_older_builds_wrote_it_rescores_every_candidate(tmp_path, monkeypatch):
    import faiss

    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)
    rng = np.random.default_rng(6)
    vectors, spaces = _vectors(rng), _text_spaces(rng)
    folder = tmp_path / "index"
    index = _write(folder, vectors, np.arange(SIZE), "ivfpq", spaces)
    name, units = index.shards[0].name, ann_module.unit_rows(spaces["retrieval_embeds"])
    queries = spaces["retrieval_embeds"][:20] + 0.1 * rng.standard_normal((20, DIM)).astype(np.float32)
    assert _rows_rescored(index, queries, units, monkeypatch) == {ann_module.RESCORED_MIN}  # the copy keeps a few
    older = faiss.index_factory(DIM, f"IVF{SIZE // 100},PQ{DIM // 2}x4fs", faiss.METRIC_INNER_PRODUCT)
    older.train(units)
    older.add(units)
    faiss.write_index(older, str(folder / ann_files(name, "ivfpq")["retrieval_embeds"]))
    index = GalleryIndex.load(folder)
    assert index.shards[0].ann_indexes["retrieval_embeds"].refine is None
    assert _rows_rescored(index, queries, units, monkeypatch) == {ann_module.CANDIDATES_MIN}  # every candidate


def test_an_older_index_searches_text_exactly_until_onenet_index_adds_its_files(tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)
    rng = np.random.default_rng(4)
    vectors, spaces = _vectors(rng), _text_spaces(rng)
    folder = tmp_path / "index"
    index = _write(folder, vectors, np.arange(SIZE), "ivfpq", spaces)
    name = index.shards[0].name
    for array in ("retrieval_embeds", "tag_embeds"):  # as an index built before text queries had ANN files
        (folder / ann_files(name, "ivfpq")[array]).unlink()
    with connect(folder, read_only=False) as connection:
        connection.execute("DELETE FROM info WHERE key = 'ann_arrays'")
    old = GalleryIndex.load(folder)
    notice = old.missing_ann_notice
    assert "no ANN files for text search" in notice and f"onenet index IMAGES --out {folder}" in notice
    assert set(old.shards[0].ann_indexes) == {"image_embeds"}
    queries = spaces["tag_embeds"][:5]
    exact = old.nearest(queries, 10, exact=True, array="tag_embeds")
    scanned = old.nearest(queries, 10, exact=False, array="tag_embeds")  # the large shard read a block at a time
    assert [[r for r, _ in found] for found in scanned] == [[r for r, _ in found] for found in exact]

    def run(self, items, batch_size):
        assert not items, "embedded an image again"
        return iter(())

    monkeypatch.setattr(indexing.Embedder, "run", run)
    index = _write(folder, vectors, np.arange(SIZE), "ivfpq", spaces)
    assert index.metadata["build_changes"]["embedded"] == 0
    assert index.metadata["ann_arrays"] == tuple(SEARCH_ARRAYS) and set(index.shards[0].ann_indexes) == set(
        SEARCH_ARRAYS
    )
    assert index.missing_ann_notice is None
    assert _recall(index, queries, "tag_embeds") >= 0.9


def test_rows_are_read_from_each_shard_as_the_joined_arrays_hold_them(tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)
    rng = np.random.default_rng(5)
    vectors, spaces = _vectors(rng), _text_spaces(rng)
    _write(tmp_path / "index", vectors, np.arange(SIZE - 50), "ivfpq", spaces)
    index = _write(tmp_path / "index", vectors, np.arange(100, SIZE), "ivfpq", spaces)  # a second shard, dead rows
    assert len(index.shards) == 2 and index.shards[0].live is not None
    rows = rng.permutation(len(index))[:200]
    for name in ARRAYS:
        assert np.array_equal(index.rows(name, rows), np.asarray(index._arrays[name], dtype=np.float32)[rows])


def test_exact_passes_read_blocks_and_match_the_joined_arrays(tmp_path, monkeypatch):
    from onenet_hf.explore.neurons import _statistics
    from onenet_hf.utils.ranking import top_k_pairs

    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 1000)
    monkeypatch.setattr(gallery_module, "FINITE_CHECK_ROWS", 256)  # many blocks per shard
    rng = np.random.default_rng(6)
    vectors, spaces = _vectors(rng), _text_spaces(rng)
    _write(tmp_path / "index", vectors, np.arange(SIZE - 50), "ivfpq", spaces)
    index = _write(tmp_path / "index", vectors, np.arange(100, SIZE), "ivfpq", spaces)  # two shards, dead rows
    joined = np.asarray(index._arrays["pooled_features"], dtype=np.float32)
    weights = rng.random(DIM).astype(np.float32)
    query = joined[7] * weights

    def focused(rows):
        return (rows * weights) @ query / np.linalg.norm(rows * weights, axis=1)

    found, exact = index.scan("pooled_features", focused, 10, skip=7), top_k_pairs(focused(joined), 10, 7)
    assert [row for row, _ in found] == [row for row, _ in exact]
    assert [score for _, score in found] == pytest.approx([score for _, score in exact], abs=1e-5)
    means, stds = _statistics(index, "channel")
    assert means == pytest.approx(joined.mean(0), abs=1e-5) and stds == pytest.approx(joined.std(0), abs=1e-5)
