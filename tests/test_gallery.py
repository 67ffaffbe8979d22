"""Gallery index (use 5): building, extending, atomic writes, model identity, and similar images."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from onenet_hf.errors import OneNetError
from onenet_hf.fingerprint import model_fingerprint
from onenet_hf.gallery import build as indexing
from onenet_hf.gallery import embedding
from onenet_hf.gallery.build import build_index, list_images
from onenet_hf.gallery.index import GalleryIndex, GalleryIndexError, ann_files, shard_files
from onenet_hf.language.label_words import imagenet_class_index
from onenet_hf.representations import ARRAYS
from tests.conftest import draw_shape

pytestmark = pytest.mark.slow


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for k, (colour, shape) in enumerate([("red", "circle"), ("red", "square"), ("blue", "triangle")]):
        draw_shape(colour, shape, 100 + k).save(folder / f"{colour}_{shape}.png")
    draw_shape("red", "circle", 200).save(folder / "nested" / "red_circle_2.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_build_lists_unreadable_files_and_records_the_model(shapes_net, image_dir, tmp_path):
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    assert len(index) == 4 and [s["path"].endswith("broken.jpg") for s in index.metadata["skipped"]] == [True]
    assert index.metadata["representation_size"] == shapes_net.model.config.hidden_size
    assert index.metadata["model"] == model_fingerprint(shapes_net.model)
    assert index.image_embeds.shape == (4, shapes_net.model.config.hidden_size)


def test_similar_images_exact_and_annoy_agree_and_leave_the_query_out(shapes_net, image_dir, tmp_path):
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    query = str(image_dir / "red_circle.png")
    exact = shapes_net.similar_images(index, query, k=3, exact=True)
    approximate = shapes_net.similar_images(index, query, k=3, exact=False)
    assert [m.path for m in exact] == [m.path for m in approximate]
    assert np.allclose([m.score for m in exact], [m.score for m in approximate], atol=1e-4)
    assert query not in [m.path for m in exact] and len(exact) == 3
    assert exact[0].path.endswith("red_circle_2.jpg")
    assert len(shapes_net.similar_images(index, 0, k=1000)) == 3  # a k beyond the gallery returns all of it
    with pytest.raises(OneNetError, match="k must be an integer from 1 to 1,000, got 1000000"):
        shapes_net.similar_images(index, 0, k=10**6)


def _focused_ranking(index: GalleryIndex, class_weights: np.ndarray, row: int) -> tuple[list[str], np.ndarray]:
    """Every other gallery image ranked by the cosine of class-weighted pooled features, computed here."""
    weighted = np.asarray(index.pooled_features, dtype=np.float64) * class_weights
    weighted /= np.linalg.norm(weighted, axis=1, keepdims=True)
    scores = weighted @ weighted[row]
    order = [i for i in np.argsort(-scores, kind="stable") if i != row]
    return [index.paths[i] for i in order], scores[order]


def test_class_focused_search_ranks_by_that_class_s_weighted_pooled_features(shapes_net, image_dir, tmp_path):
    from onenet_hf.language.label_words import imagenet_labels

    index = shapes_net.build_index(image_dir, tmp_path / "index")
    row = index.paths.index(str((image_dir / "red_circle.png").resolve()))
    unfocused = [m.path for m in shapes_net.similar_images(index, row, k=3, exact=True)]
    classifier = shapes_net.model.backbone.net._fc.weight.detach().double().numpy()  # (1000 classes, 1280)
    names = Counter(label.lower() for label in imagenet_labels())
    unique = [c for c, label in enumerate(imagenet_labels()) if names[label.lower()] == 1]  # a name finds this class
    rankings = {c: _focused_ranking(index, classifier[c], row) for c in unique}
    # A class whose weighting reorders the gallery, its scores well apart: only the class weights explain its order.
    reordering = {c: ranking for c, ranking in rankings.items() if ranking[0] != unfocused}
    assert reordering, "no ImageNet class reorders this gallery: the test cannot tell focus from no focus"
    focus = max(reordering, key=lambda c: np.diff(-reordering[c][1]).min())
    expected_paths, expected_scores = reordering[focus]
    assert np.diff(-expected_scores).min() > 1e-3
    by_index = shapes_net.similar_images(index, row, k=3, focus_class=focus)
    assert [m.path for m in by_index] == expected_paths != unfocused
    assert [m.score for m in by_index] == pytest.approx(expected_scores, abs=1e-4)
    by_name = shapes_net.similar_images(index, row, k=2, focus_class=imagenet_labels()[focus].upper())
    assert [m.path for m in by_name] == expected_paths[:2]
    with pytest.raises(OneNetError, match="unknown ImageNet class"):
        shapes_net.similar_images(index, 1, focus_class="unicorn")


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _shard_files(index: GalleryIndex) -> set[str]:
    return {
        file
        for shard in index.shards
        for file in [*shard_files(shard.name).values(), *ann_files(shard.name, shard.ann).values()]
    }


def test_adding_images_writes_one_small_shard_and_embeds_only_the_new_ones(
    shapes_net, image_dir, tmp_path, monkeypatch
):
    before = shapes_net.build_index(image_dir, tmp_path / "index")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")
    embedded = _count_embeddings(monkeypatch)
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    assert embedded == [1] and len(index) == 5
    assert [(s.size, len(s.positions)) for s in index.shards] == [(5, 4), (2, 1)]  # the broken file: a slot unlisted
    assert index.shards[0].name == before.shards[0].name  # the first shard is not rewritten
    assert _files(tmp_path / "index") == {"index.sqlite", ".onenet-index", *_shard_files(index)}
    assert np.array_equal(index.image_embeds[:4], before.image_embeds)
    assert index.metadata["build"] != before.metadata["build"]


def test_deleted_and_changed_files_are_dropped_or_embedded_again(shapes_net, image_dir, tmp_path, monkeypatch):
    before = shapes_net.build_index(image_dir, tmp_path / "index")
    (image_dir / "red_square.png").unlink()
    changed = image_dir / "blue_triangle.png"
    draw_shape("green", "circle", 400).save(changed)
    os.utime(changed, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    embedded = _count_embeddings(monkeypatch)
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    assert embedded == [1] and len(index) == 3 and not any(p.endswith("red_square.png") for p in index.paths)
    embedded.clear()
    row = index.row_of(path=str(changed.resolve()))
    assert not np.allclose(index.image_embeds[row], before.image_embeds[before.row_of(path=str(changed.resolve()))])
    fresh = shapes_net.build_index(image_dir, tmp_path / "fresh")
    assert sorted(index.paths) == sorted(fresh.paths)
    assert np.allclose(
        index.image_embeds[row], fresh.image_embeds[fresh.row_of(path=str(changed.resolve()))], atol=1e-5
    )
    again = shapes_net.build_index(image_dir, tmp_path / "index")  # nothing changed: nothing embedded or written
    assert embedded == [3] and [s.name for s in again.shards] == [s.name for s in index.shards]


def test_a_killed_build_leaves_the_old_index_intact_and_the_next_build_cleans_up(
    shapes_net, image_dir, tmp_path, monkeypatch
):
    before = shapes_net.build_index(image_dir, tmp_path / "index")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(indexing._Build, "commit", crash)  # killed after writing the new shard, before the commit,
    monkeypatch.setattr(indexing, "_delete_unlisted", lambda folder, upgraded: None)  # so no clean-up runs either
    with pytest.raises(KeyboardInterrupt):
        build_index(shapes_net.model, shapes_net.processor, image_dir, tmp_path / "index")
    monkeypatch.undo()
    orphans = _files(tmp_path / "index") - _shard_files(before) - {"index.sqlite", ".onenet-index"}
    assert len(orphans) == 4  # the new shard's arrays, listed nowhere
    after = GalleryIndex.load(tmp_path / "index", shapes_net.model)
    assert after.paths == before.paths and np.array_equal(after.image_embeds, before.image_embeds)
    rebuilt = shapes_net.build_index(image_dir, tmp_path / "index")
    assert len(rebuilt) == 5 and not orphans & _files(tmp_path / "index")


def test_missing_corrupt_and_foreign_indexes_are_refused(shapes_net, shapes_model, image_dir, tmp_path):
    with pytest.raises(GalleryIndexError, match="no gallery index"):
        shapes_net.load_index(tmp_path / "nowhere")
    shapes_net.build_index(image_dir, tmp_path / "index")
    from onenet_hf import OneNetModel

    other = OneNetModel.from_pretrained(shapes_model)  # same caption network, untrained heads
    with pytest.raises(GalleryIndexError, match="made by another model"):
        GalleryIndex.load(tmp_path / "index", other)
    rebuilt = build_index(other, shapes_net.processor, image_dir, tmp_path / "other")
    assert build_index(other, shapes_net.processor, image_dir, tmp_path / "index").paths == rebuilt.paths
    assert GalleryIndex.load(tmp_path / "index", other).metadata["model"] == model_fingerprint(other)
    index = shapes_net.build_index(image_dir, tmp_path / "index")  # and back: building replaces a foreign index
    (tmp_path / "index" / shard_files(index.shards[0].name)["image_embeds"]).write_bytes(b"garbage")
    with pytest.raises(GalleryIndexError, match="corrupt gallery index"):
        shapes_net.load_index(tmp_path / "index")
    (tmp_path / "index" / "index.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(GalleryIndexError, match="corrupt gallery index .*index.sqlite"):
        shapes_net.load_index(tmp_path / "index")
    assert len(shapes_net.build_index(image_dir, tmp_path / "index")) == 4  # a corrupt catalogue is replaced


def _format_2_index(built: GalleryIndex, folder: Path) -> Path:
    """`built`'s vectors as a format-2 index (index.json and whole arrays, as OneNet 0.2 wrote them) at `folder`."""
    folder.mkdir()
    files = {name: f"{name}-0123456789ab.npy" for name in ARRAYS} | {"annoy": "annoy-0123456789ab.ann"}
    for name in ARRAYS:
        np.save(folder / files[name], np.asarray(getattr(built, name)))
    (folder / files["annoy"]).write_bytes(b"")
    metadata = {"format": 2, "model": built.metadata["model"], "representation_size": 16, "files": files,
                "paths": built.paths, "hashes": built.metadata["hashes"], "skipped": []}  # fmt: skip
    (folder / "index.json").write_text(json.dumps(metadata))
    return folder


def test_a_format_2_index_is_refused_with_how_to_upgrade_and_upgraded_without_embedding(
    shapes_net, image_dir, tmp_path, monkeypatch
):
    built = shapes_net.build_index(image_dir, tmp_path / "built")
    old = _format_2_index(built, tmp_path / "old")
    with pytest.raises(GalleryIndexError, match=f"older format .*onenet index IMAGES --out {old} once"):
        shapes_net.load_index(old)
    embedded = _count_embeddings(monkeypatch)
    upgraded = shapes_net.build_index(image_dir, old)
    assert embedded == [] and sorted(upgraded.paths) == sorted(built.paths)
    assert _files(old) == {"index.sqlite", ".onenet-index", *_shard_files(upgraded)}


@pytest.mark.parametrize("failure", ["rebuild", "upgrade"])
def test_a_failed_rebuild_or_upgrade_keeps_the_index_it_would_replace(shapes_net, image_dir, tmp_path, failure):
    folder = tmp_path / "index"
    built = shapes_net.build_index(image_dir, folder)
    if failure == "upgrade":
        shutil.rmtree(folder)
        _format_2_index(built, folder)
    before = _files(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GalleryIndexError, match="no readable images"):  # a wrong or unmounted image folder
        shapes_net.build_index([empty / "gone.jpg"], folder, rebuild=failure == "rebuild")
    if failure == "rebuild":
        assert shapes_net.load_index(folder).paths == built.paths
    else:
        assert before <= _files(folder)  # every format-2 file is still there
        assert len(shapes_net.build_index(image_dir, folder)) == 4


def test_large_shards_are_searched_by_their_ann_and_small_ones_merged(shapes_net, image_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "EXACT_SEARCH_MAX_IMAGES", 2)  # every shard of 3+ rows gets an HNSW file
    monkeypatch.setattr(indexing, "MAX_SMALL_SHARDS", 1)
    index = shapes_net.build_index(image_dir, tmp_path / "index", ann="hnsw")
    assert [(s.size, s.ann) for s in index.shards] == [(5, "hnsw")]  # the broken file's slot is not listed
    assert len(index.shards[0].positions) == 4
    for colour in ("green", "blue"):  # two one-image shards: the second build merges them
        draw_shape(colour, "circle", 500).save(image_dir / f"{colour}_circle.png")
        index = shapes_net.build_index(image_dir, tmp_path / "index", ann="hnsw")
    assert [(s.size, s.ann) for s in index.shards] == [(5, "hnsw"), (2, None)]
    query = str(image_dir / "red_circle.png")
    approximate = shapes_net.similar_images(index, query, k=5, exact=False)
    exact = shapes_net.similar_images(index, query, k=5, exact=True)
    assert [m.path for m in approximate] == [m.path for m in exact]
    (image_dir / "red_square.png").unlink()  # a dead row in the HNSW shard: filtered out of its answers
    index = shapes_net.build_index(image_dir, tmp_path / "index", ann="annoy")
    assert {s.ann for s in index.shards} == {"annoy", None}
    assert [m.path for m in shapes_net.similar_images(index, query, k=4, exact=False)] == [
        m.path for m in shapes_net.similar_images(index, query, k=4, exact=True)
    ]
    assert _files(tmp_path / "index") == {"index.sqlite", ".onenet-index", *_shard_files(index)}


def test_bad_queries_are_clear_errors(shapes_net, image_dir, tmp_path):
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    with pytest.raises(OneNetError, match="k must be an integer from 1 to 1,000, got 0"):
        shapes_net.similar_images(index, 0, k=0)
    with pytest.raises(OneNetError, match="gallery item 99 does not exist"):
        shapes_net.similar_images(index, 99)
    with pytest.raises(OneNetError, match="no such file"):
        shapes_net.similar_images(index, str(tmp_path / "missing.png"))
    with pytest.raises(GalleryIndexError, match="no readable images") as error:
        build_index(shapes_net.model, shapes_net.processor, [image_dir / "broken.jpg"], tmp_path / "empty")
    assert f"skipped {image_dir / 'broken.jpg'}: " in str(error.value) and "{" not in str(error.value)  # not a dict


def test_a_moved_gallery_is_not_embedded_again(shapes_net, image_dir, tmp_path, monkeypatch):
    """A built Space ships its index; where it is unpacked, the photos' paths differ but not their bytes."""
    shapes_net.build_index(image_dir, tmp_path / "index")
    moved = image_dir.rename(tmp_path / "moved")
    monkeypatch.setattr(embedding, "embed_pixels", lambda *a: pytest.fail("an unchanged photo was embedded again"))
    index = shapes_net.build_index(moved, tmp_path / "index")
    assert len(index) == 4 and all(path.startswith(str(moved.resolve())) for path in index.paths)


def _count_embeddings(monkeypatch, seconds: float = 0.0) -> list[int]:
    """Record how many images each `embed_pixels` call embeds (optionally slowed, to widen race windows)."""
    embedded, original = [], embedding.embed_pixels

    def counting(model, pixel_values, image_encoder=None):
        embedded.append(len(pixel_values))
        time.sleep(seconds)
        return original(model, pixel_values, image_encoder)

    monkeypatch.setattr(embedding, "embed_pixels", counting)
    return embedded


def test_an_out_folder_that_is_not_the_index_s_own_is_refused_before_any_work(
    shapes_net, image_dir, tmp_path, monkeypatch
):
    (image_dir / "nested" / "deeper").mkdir()
    before = sorted(image_dir.rglob("*"))
    (tmp_path / "a-file").write_text("keep me")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    (tmp_path / "other" / "sub").mkdir()
    (tmp_path / "catalogue-folder" / "index.sqlite").mkdir(parents=True)
    embedded = _count_embeddings(monkeypatch)
    cases = [
        (image_dir, "is or contains the images"),  # --out equal to the image folder
        (tmp_path, "is or contains the images"),  # --out containing it (here also not empty)
        (tmp_path / "a-file", "is a file, not a folder"),
        (tmp_path / "other", "is not empty and holds no gallery index"),
        (tmp_path / "catalogue-folder", "index.sqlite should be the index's catalogue but is a folder"),
    ]
    for out, message in cases:
        with pytest.raises(GalleryIndexError, match=message):
            shapes_net.build_index(image_dir, out)
    with pytest.raises(GalleryIndexError, match="is or contains the images"):
        shapes_net.build_index([image_dir / "nested" / "red_circle_2.jpg"], image_dir / "nested")
    assert embedded == [] and sorted(image_dir.rglob("*")) == before
    assert (tmp_path / "a-file").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt", "sub"]


def test_a_build_deletes_only_files_builds_wrote(shapes_net, image_dir, tmp_path):
    first = shapes_net.build_index(image_dir, tmp_path / "index")
    (tmp_path / "index" / "notes.txt").write_text("a user's file")
    (tmp_path / "index" / "backup").mkdir()
    leftover = tmp_path / "index" / "shard-0123456789ab.image_embeds.npy"  # as a killed build leaves it
    leftover.write_bytes(b"partial")
    (tmp_path / "index" / "shard-notes.txt").write_text("a user's file with a shard-like name")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")
    second = shapes_net.build_index(image_dir, tmp_path / "index")
    names = _files(tmp_path / "index")
    assert names == {"index.sqlite", ".onenet-index", "notes.txt", "shard-notes.txt", "backup", *_shard_files(second)}
    assert _shard_files(first) <= names and len(second) == 5
    inside = shapes_net.build_index(image_dir, image_dir / ".index")  # a folder of its own inside the images
    assert len(inside) == 5 and (image_dir / "notes.txt").read_text() == "not an image"


def test_a_second_build_of_one_index_is_refused_or_waits_its_turn(shapes_net, image_dir, tmp_path, monkeypatch):
    embedded = _count_embeddings(monkeypatch, seconds=1.0)  # a large gallery's long embedding phase
    folder = tmp_path / "index"
    results, errors = [], []

    def build(**kwargs) -> None:
        try:
            results.append(shapes_net.build_index(image_dir, folder, **kwargs))
        except Exception as error:  # reported by the assertions below
            errors.append(error)

    threads = [threading.Thread(target=build), threading.Thread(target=build)]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for thread in threads:
        thread.join()
    assert len(results) == 1 and len(errors) == 1 and embedded == [4]
    assert isinstance(errors[0], GalleryIndexError)
    assert str(errors[0]) == f"another build of the index at {folder} is running; run this again when it has finished"
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")
    results.clear()
    threads = [threading.Thread(target=build), threading.Thread(target=build, kwargs={"lock_timeout": None})]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for thread in threads:
        thread.join()
    assert errors[1:] == [] and embedded == [4, 1]  # the second waited, then found nothing left to embed
    index = GalleryIndex.load(folder, shapes_net.model)
    assert len(index) == 5 and index.paths == results[0].paths == results[1].paths
    assert _files(folder) == {"index.sqlite", ".onenet-index", *_shard_files(index)}


def test_a_build_refuses_to_wait_longer_than_its_lock_timeout(shapes_net, image_dir, tmp_path):
    folder = tmp_path / "index"
    with indexing.build_lock(folder, None):  # another build holds the index
        with pytest.raises(GalleryIndexError, match=f"another build of the index at {folder} is running"):
            shapes_net.build_index(image_dir, folder, lock_timeout=0.2)


@pytest.mark.parametrize(
    "change",
    [
        "DELETE FROM info WHERE key = 'format'",
        "UPDATE info SET value = '2' WHERE key = 'format'",
        "DELETE FROM info WHERE key = 'model'",
        "UPDATE info SET value = 'many' WHERE key = 'representation_size'",
        "UPDATE shards SET name = '../../x'",
        "UPDATE shards SET ann = 'magic'",
        "UPDATE images SET position = 99",
        "UPDATE images SET position = 0",  # every image at one position: read as one photo k times before
        "UPDATE images SET shard = 42",
        "DROP TABLE images",
    ],
)
def test_a_malformed_catalogue_is_a_corrupt_index_that_indexing_rebuilds(shapes_net, image_dir, tmp_path, change):
    folder = tmp_path / "index"
    shapes_net.build_index(image_dir, folder)
    with sqlite3.connect(folder / "index.sqlite") as connection:
        connection.execute(change)
    connection.close()
    with pytest.raises(GalleryIndexError, match=r"^corrupt gallery index at .*index\.sqlite.*; rebuild it") as error:
        shapes_net.load_index(folder)
    assert "\n" not in str(error.value)
    probe = sqlite3.connect(folder / "index.sqlite", timeout=0)  # while the refusal lives on, it holds no read:
    probe.execute("PRAGMA user_version = 1")  # a write to checkpoint, which a build's closing connection would wait
    assert probe.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # 30 s on for a reader left open
    probe.close()
    assert len(shapes_net.build_index(image_dir, folder)) == 4  # no --rebuild needed
    assert len(shapes_net.load_index(folder)) == 4


def test_link_loops_and_broken_links_are_listed_as_skipped(shapes_net, image_dir, tmp_path):
    (image_dir / "loop.jpg").symlink_to(image_dir / "loop.jpg")
    (image_dir / "a.png").symlink_to(image_dir / "b.png")
    (image_dir / "b.png").symlink_to(image_dir / "a.png")
    (image_dir / "gone.png").symlink_to(tmp_path / "deleted.png")
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    reasons = {Path(s["path"]).name: s["reason"] for s in index.metadata["skipped"]}
    assert "Too many levels of symbolic links" in reasons["loop.jpg"]
    assert "Too many levels of symbolic links" in reasons["a.png"] and "b.png" in reasons
    assert "No such file or directory" in reasons["gone.png"]
    assert len(index) == 4


def test_an_imagenet_class_is_an_index_a_decimal_string_or_a_name():
    assert imagenet_class_index(284) == imagenet_class_index("284") == imagenet_class_index("Siamese cat") == 284
    with pytest.raises(OneNetError, match="index must be 0-999"):
        imagenet_class_index("1000")


# Damaged catalogues and shards: every stored value is checked on load, one line names the file, and a rebuild
# (or the next build, which checks the rows it would reuse) repairs any of them.


def _save_array(name: str, make):
    """A damage that replaces shard array `name` with `make(array)`."""

    def damage(folder: Path) -> str:
        (file,) = folder.glob(f"shard-*.{name}.npy")
        array = np.load(file)
        np.save(file, make(array), allow_pickle=True)
        return file.name

    return damage


def _sql(statement: str):
    def damage(folder: Path) -> str:
        with sqlite3.connect(folder / "index.sqlite") as connection:
            connection.execute(statement)
        connection.close()
        return "index.sqlite"

    return damage


def _truncate(name: str):
    def damage(folder: Path) -> str:
        (file,) = folder.glob(f"shard-*.{name}.npy")
        file.write_bytes(file.read_bytes()[:100])
        return file.name

    return damage


def _fifo(name: str):
    """A damage that replaces shard array `name` with a FIFO, which would block a reader opening it."""

    def damage(folder: Path) -> str:
        (file,) = folder.glob(f"shard-*.{name}.npy")
        file.unlink()
        os.mkfifo(file)
        return file.name

    return damage


def _with_nan_row(array: np.ndarray) -> np.ndarray:
    array = array.copy()
    array[0] = np.nan
    return array


DAMAGES = {
    "size is text": _sql("UPDATE shards SET size = 'abc'"),
    "size is negative": _sql("UPDATE shards SET size = -4"),
    "size is a float": _sql("UPDATE shards SET size = 4.5"),
    "path is NULL": _sql("UPDATE images SET path = NULL WHERE position = 0"),
    "path is a blob": _sql("UPDATE images SET path = X'00ff' WHERE position = 1"),
    "hash is a blob": _sql("UPDATE images SET hash = X'00ff'"),
    "position is text": _sql("UPDATE images SET position = 'first'"),
    "representation size is a blob": _sql("UPDATE info SET value = X'3136' WHERE key = 'representation_size'"),
    **{f"{name} is 0-d": _save_array(name, lambda a: a.dtype.type(1)) for name in ARRAYS},
    **{f"{name} is 1-d": _save_array(name, lambda a: a[:, 0].copy()) for name in ARRAYS},
    **{f"{name} has a column more": _save_array(name, lambda a: np.pad(a, ((0, 0), (0, 1)))) for name in ARRAYS},
    **{f"{name} has a row less": _save_array(name, lambda a: a[1:].copy()) for name in ARRAYS},
    **{f"{name} is float64": _save_array(name, lambda a: a.astype(np.float64)) for name in ARRAYS},
    **{f"{name} holds integers": _save_array(name, lambda a: a.astype(np.int32)) for name in ARRAYS},
    **{f"{name} holds objects": _save_array(name, lambda a: a.astype(object)) for name in ARRAYS},
    **{f"{name} is truncated": _truncate(name) for name in ARRAYS},
    **{f"{name} is a FIFO": _fifo(name) for name in ARRAYS if hasattr(os, "mkfifo")},
    "image_embeds is 3-d": _save_array("image_embeds", lambda a: a[:, :, None].copy()),
}
NON_FINITE = {
    **{f"{name} has an all-NaN row": _save_array(name, _with_nan_row) for name in ARRAYS},
    "retrieval_embeds holds infinity": _save_array("retrieval_embeds", lambda a: a * np.float32(np.inf)),
}


@pytest.fixture(scope="module")
def built_index(shapes_model_with_heads, tmp_path_factory):
    from onenet_hf import OneNet

    net = OneNet.from_pretrained(shapes_model_with_heads)
    images = tmp_path_factory.mktemp("photos")
    for k, (colour, shape) in enumerate([("red", "circle"), ("red", "square"), ("blue", "triangle"), ("blue", "star")]):
        draw_shape(colour, shape, 300 + k).save(images / f"{colour}_{shape}.png")
    folder = tmp_path_factory.mktemp("built") / "index"
    net.build_index(images, folder)
    return net, images, folder


# One damage of each kind whose repair by --rebuild is tried: the catalogue, each array's dtype, shape and bytes.
REBUILT = {
    "size is text",
    "path is NULL",
    "image_embeds is truncated",
    "pooled_features is 0-d",
    "tag_embeds holds objects",
    "retrieval_embeds has a row less",
    "retrieval_embeds is a FIFO",
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_catalogue_or_shard_is_one_line_naming_the_file_and_a_rebuild_repairs_it(
    built_index, tmp_path, damage
):
    net, images, built = built_index
    folder = tmp_path / "index"
    shutil.copytree(built, folder)
    file = DAMAGES[damage](folder)
    with pytest.raises(GalleryIndexError) as error:
        net.load_index(folder)
    message = str(error.value)
    assert message.startswith(f"corrupt gallery index at {folder}: ") and "\n" not in message
    assert message.count("corrupt gallery index at") == 1  # not wrapped twice
    assert file in message and message.endswith(f"rebuild it: onenet index IMAGES --out {folder} --rebuild")
    if damage not in REBUILT:  # every damage is one line; a rebuild is tried on one of each kind (CI time)
        return
    rebuilt = net.build_index(images, folder, rebuild=True)
    assert len(rebuilt) == 4 and rebuilt.metadata["build_changes"]["embedded"] == 4
    rebuilt.check_finite()
    assert len(net.similar_images(net.load_index(folder), 0, 3)) == 3


@pytest.mark.parametrize("damage", sorted(NON_FINITE))
def test_nan_or_infinity_in_a_shard_fails_its_first_use_and_a_copied_row_is_embedded_again(
    built_index, tmp_path, damage
):
    net, images, built = built_index
    folder = tmp_path / "index"
    shutil.copytree(built, folder)
    file = NON_FINITE[damage](folder)
    index = net.load_index(folder)  # the headers are fine: values are checked when first read
    with pytest.raises(GalleryIndexError, match=rf"{file} holds NaN or infinite values; rebuild it: .* --rebuild$"):
        index.check_finite()
    if "image_embeds" in file:
        with pytest.raises(GalleryIndexError, match=f"{file} holds NaN"):
            net.similar_images(index, 1, 3)
    if "retrieval_embeds" in file:
        with pytest.raises(GalleryIndexError, match=f"{file} holds NaN"):
            net.search(index, "a red circle", 3)
    kept = net.build_index(images, folder)  # unchanged photos keep their rows: a build reads no stored value
    assert kept.metadata["build_changes"]["embedded"] == 0
    with pytest.raises(GalleryIndexError, match=rf"{file} holds NaN or infinite values; rebuild it: .* --rebuild$"):
        kept.check_finite()
    moved = tmp_path / "moved.png"  # the photo of row 0 (damaged in every case), moved: its row is not copied
    shutil.copyfile(index.paths[0], moved)
    assert net.build_index([*index.paths[1:], moved], folder).metadata["build_changes"] == {
        "embedded": 1,
        "reused": 0,
        "dropped": 1,
    }
    rebuilt = net.build_index(images, folder, rebuild=True)
    assert rebuilt.metadata["build_changes"]["embedded"] == 4
    rebuilt.check_finite()


def test_a_merge_refuses_a_stored_row_holding_nan_and_leaves_the_index_as_it_was(built_index, tmp_path, monkeypatch):
    from onenet_hf.gallery import build as indexing

    net, _, built = built_index
    folder = tmp_path / "index"
    shutil.copytree(built, folder)
    file = _save_array("image_embeds", _with_nan_row)(folder)  # row 0
    paths = net.load_index(folder).paths
    copy = tmp_path / "copy.png"  # a copy of row 1's photo: a second shard, one row copied (a finite one)
    shutil.copyfile(paths[1], copy)
    monkeypatch.setattr(indexing, "MAX_SMALL_SHARDS", 1)  # two small shards: the merge copies row 0 too
    with pytest.raises(GalleryIndexError, match=rf"{file} holds NaN or infinite values; rebuild it: .* --rebuild$"):
        net.build_index([*paths, copy], folder)
    assert net.load_index(folder).paths == paths  # rolled back, and the new shards' files deleted
    assert sorted(p.name for p in folder.glob("shard-*")) == sorted(p.name for p in built.glob("shard-*"))


def test_random_bytes_in_any_index_file_are_a_one_line_error_or_harmless(built_index, tmp_path):
    net, images, built = built_index
    rng = np.random.default_rng(0)
    files = sorted(p.name for p in built.iterdir() if p.name.endswith(".npy"))
    for trial in range(24):
        folder = tmp_path / f"index-{trial}"
        shutil.copytree(built, folder)
        file = folder / files[trial % len(files)]
        data = bytearray(file.read_bytes())
        for offset in rng.integers(0, min(len(data), 160), size=3):  # the .npy header and the first values
            data[offset] = int(rng.integers(0, 256))
        file.write_bytes(bytes(data))
        try:
            index = net.load_index(folder)
            index.check_finite()
            net.similar_images(index, 0, 3)
        except GalleryIndexError as error:
            assert "\n" not in str(error) and str(error).endswith("--rebuild")
    assert len(net.build_index(images, folder, rebuild=True)) == 4


def test_a_gallery_folders_deep_is_listed_without_recursion_and_folder_links_are_not_followed(tmp_path):
    deep = tmp_path / "gallery"
    deep.mkdir()
    for _ in range(1_100):  # Path.rglob's recursion overflowed here (so does mkdir(parents=True)'s)
        deep = deep / "d"
        deep.mkdir()
    draw_shape("red", "circle", 1).save(deep / "deepest.png")
    (tmp_path / "gallery" / "not-a-photo.jpg").mkdir()
    (tmp_path / "outside").mkdir()
    draw_shape("blue", "square", 2).save(tmp_path / "outside" / "elsewhere.png")
    (tmp_path / "gallery" / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    try:
        assert list_images(tmp_path / "gallery") == [deep / "deepest.png"]
    finally:  # from the bottom up: shutil.rmtree, which pytest cleans up with, recurses as rglob did
        (deep / "deepest.png").unlink()
        while deep != tmp_path / "gallery":
            deep.rmdir()
            deep = deep.parent


def test_an_index_whose_marker_is_not_a_file_is_one_line_saying_what_to_remove(tmp_path):
    from onenet_hf.gallery.build import MARKER_FILE, check_index_folder

    folder = tmp_path / "index"
    (folder / MARKER_FILE).mkdir(parents=True)  # damage: a build would fail to open it, readers never look at it
    (folder / "index.sqlite").write_bytes(b"")
    with pytest.raises(GalleryIndexError, match=r"\.onenet-index should be the index's marker file but is a folder"):
        check_index_folder(folder)
    (folder / MARKER_FILE).rmdir()
    (folder / MARKER_FILE).symlink_to(tmp_path / "elsewhere.txt")  # a build appends to its marker: never through a link
    with pytest.raises(GalleryIndexError, match="remove it and run this again"):
        check_index_folder(folder)
    assert (folder / "index.sqlite").exists() and not (tmp_path / "elsewhere.txt").exists()  # nothing touched


def test_a_query_runs_numpy_s_blas_on_one_thread(shapes_net, image_dir, tmp_path, monkeypatch):
    from threadpoolctl import threadpool_info

    from onenet_hf.gallery import index as index_module

    index = shapes_net.build_index(image_dir, tmp_path / "index")
    seen, cosine_matrix = [], index_module.cosine_matrix

    def recording(*args):
        seen.append({pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"})
        return cosine_matrix(*args)

    monkeypatch.setattr(index_module, "cosine_matrix", recording)
    assert index.nearest(index.rows("image_embeds", [0])[0], 2)[0][0][0] == 0
    assert seen == [{1}]  # OpenBLAS's workers spin after a call and take a core from the torch work after it
