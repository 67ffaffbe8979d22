"""Gallery index (use 5): building, extending, atomic writes, model identity, and similar images."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from onenet_hf import indexing
from onenet_hf.errors import OneNetError
from onenet_hf.fingerprint import model_fingerprint
from onenet_hf.gallery import GalleryIndex, GalleryIndexError
from onenet_hf.indexing import build_index
from onenet_hf.uses.similar_images import imagenet_class_index
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
    from onenet_hf.uses.tag import imagenet_labels

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


def test_adding_images_embeds_only_the_new_ones(shapes_net, image_dir, tmp_path, monkeypatch):
    shapes_net.build_index(image_dir, tmp_path / "index")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")
    embedded = []
    original = indexing.embed_images
    monkeypatch.setattr(
        indexing, "embed_images", lambda m, p, images: embedded.append(len(images)) or original(m, p, images)
    )
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    assert embedded == [1] and len(index) == 5
    assert sorted(p.name for p in (tmp_path / "index").iterdir() if p.suffix == ".ann") == [
        index.metadata["files"]["annoy"]
    ]


def test_a_killed_build_leaves_the_old_index_intact(shapes_net, image_dir, tmp_path, monkeypatch):
    before = shapes_net.build_index(image_dir, tmp_path / "index")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(indexing.os, "replace", crash)  # killed after writing new files, before the switch
    with pytest.raises(KeyboardInterrupt):
        build_index(shapes_net.model, shapes_net.processor, image_dir, tmp_path / "index")
    monkeypatch.undo()
    after = GalleryIndex.load(tmp_path / "index", shapes_net.model)
    assert after.paths == before.paths and np.array_equal(after.image_embeds, before.image_embeds)


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
    shapes_net.build_index(image_dir, tmp_path / "index")  # and back: building replaces a foreign index
    metadata = json.loads((tmp_path / "index" / "index.json").read_text())
    (tmp_path / "index" / metadata["files"]["image_embeds"]).write_bytes(b"garbage")
    with pytest.raises(GalleryIndexError, match="corrupt gallery index"):
        shapes_net.load_index(tmp_path / "index")
    (tmp_path / "index" / "index.json").write_text("{not json")
    with pytest.raises(GalleryIndexError, match="corrupt gallery index"):
        shapes_net.load_index(tmp_path / "index")


def test_bad_queries_are_clear_errors(shapes_net, image_dir, tmp_path):
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    with pytest.raises(OneNetError, match="k must be an integer from 1 to 1,000, got 0"):
        shapes_net.similar_images(index, 0, k=0)
    with pytest.raises(OneNetError, match="gallery item 99 does not exist"):
        shapes_net.similar_images(index, 99)
    with pytest.raises(OneNetError, match="no such file"):
        shapes_net.similar_images(index, str(tmp_path / "missing.png"))
    with pytest.raises(GalleryIndexError, match="no readable images"):
        build_index(shapes_net.model, shapes_net.processor, [image_dir / "broken.jpg"], tmp_path / "empty")


def test_a_moved_gallery_is_not_embedded_again(shapes_net, image_dir, tmp_path, monkeypatch):
    """A built Space ships its index; where it is unpacked, the photos' paths differ but not their bytes."""
    shapes_net.build_index(image_dir, tmp_path / "index")
    moved = image_dir.rename(tmp_path / "moved")
    monkeypatch.setattr(indexing, "embed_images", lambda *args: pytest.fail("an unchanged photo was embedded again"))
    index = shapes_net.build_index(moved, tmp_path / "index")
    assert len(index) == 4 and all(path.startswith(str(moved.resolve())) for path in index.paths)


def _count_embeddings(monkeypatch, seconds: float = 0.0) -> list[int]:
    """Record how many images each `embed_images` call embeds (optionally slowed, to widen race windows)."""
    embedded, original = [], indexing.embed_images

    def counting(model, processor, images):
        embedded.append(len(images))
        time.sleep(seconds)
        return original(model, processor, images)

    monkeypatch.setattr(indexing, "embed_images", counting)
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
    embedded = _count_embeddings(monkeypatch)
    cases = [
        (image_dir, "is or contains the images"),  # --out equal to the image folder
        (tmp_path, "is or contains the images"),  # --out containing it (here also not empty)
        (tmp_path / "a-file", "is a file, not a folder"),
        (tmp_path / "other", "is not empty and holds no gallery index"),
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
    leftover = tmp_path / "index" / "image_embeds-0123456789ab.npy"  # as a killed build leaves it
    leftover.write_bytes(b"partial")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")
    second = shapes_net.build_index(image_dir, tmp_path / "index")
    names = {p.name for p in (tmp_path / "index").iterdir()}
    assert names == {"index.json", ".onenet-index", "notes.txt", "backup", *second.metadata["files"].values()}
    assert not set(first.metadata["files"].values()) & names and len(second) == 5
    inside = shapes_net.build_index(image_dir, image_dir / ".index")  # a folder of its own inside the images
    assert len(inside) == 5 and (image_dir / "notes.txt").read_text() == "not an image"


def test_builds_of_one_index_at_once_take_turns(shapes_net, image_dir, tmp_path, monkeypatch):
    embedded = _count_embeddings(monkeypatch, seconds=1.0)  # a large gallery's long embedding phase
    replace = indexing.os.replace

    def slow_replace(*args):  # a long write phase: arrays written, metadata not yet switched
        time.sleep(1.0)
        replace(*args)

    monkeypatch.setattr(indexing.os, "replace", slow_replace)
    folder = tmp_path / "index"
    results, errors = [], []

    def build() -> None:
        try:
            results.append(shapes_net.build_index(image_dir, folder))
        except Exception as error:  # reported by the assertions below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(2)]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for thread in threads:
        thread.join()
    assert errors == []
    index = GalleryIndex.load(folder, shapes_net.model)  # before the lock: files deleted by the other build
    assert len(index) == 4 and index.paths == results[0].paths == results[1].paths
    assert {p.name for p in folder.iterdir()} == {"index.json", ".onenet-index", *index.metadata["files"].values()}
    assert embedded == [4]  # the second build waited, then reused the first one's vectors


def test_a_build_refuses_to_wait_longer_than_its_lock_timeout(shapes_net, image_dir, tmp_path):
    folder = tmp_path / "index"
    with indexing._build_lock(folder, None):  # another build holds the index
        with pytest.raises(GalleryIndexError, match=f"another build of the index at {folder} is running"):
            shapes_net.build_index(image_dir, folder, lock_timeout=0.2)


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        None,
        {},
        "text",
        {"drop": "model"},
        {"drop": "hashes"},
        {"drop": "files"},
        {"set": ("hashes", None)},
        {"set": ("paths", "not a list")},
        {"set": ("files", {"image_embeds": "../../x.npy"})},
        {"set": ("skipped", [1])},
    ],
    ids=lambda m: json.dumps(m)[:40],
)
def test_malformed_metadata_is_a_corrupt_index_that_indexing_rebuilds(shapes_net, image_dir, tmp_path, metadata):
    folder = tmp_path / "index"
    good = json.loads((shapes_net.build_index(image_dir, folder).folder / "index.json").read_text())
    if isinstance(metadata, dict) and metadata:
        changed = dict(good)
        if "drop" in metadata:
            del changed[metadata["drop"]]
        else:
            changed[metadata["set"][0]] = metadata["set"][1]
        metadata = changed
    (folder / "index.json").write_text(json.dumps(metadata))
    with pytest.raises(GalleryIndexError, match=r"^corrupt gallery index at .*index\.json .*; rebuild it") as error:
        shapes_net.load_index(folder)
    assert "\n" not in str(error.value)
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
