"""Gallery index (use 5): building, extending, atomic writes, model identity, and similar images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onenet_hf import gallery
from onenet_hf.gallery import GalleryIndex, GalleryIndexError, build_index
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
    assert index.metadata["model"] == gallery.model_fingerprint(shapes_net.model)
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
    assert len(shapes_net.similar_images(index, 0, k=10**6)) == 3


def test_class_focused_search_runs_on_pooled_features(shapes_net, image_dir, tmp_path):
    index = shapes_net.build_index(image_dir, tmp_path / "index")
    by_index = shapes_net.similar_images(index, 1, k=2, focus_class=284)
    by_name = shapes_net.similar_images(index, 1, k=2, focus_class="Siamese cat")
    assert [m.path for m in by_index] == [m.path for m in by_name] and len(by_index) == 2
    with pytest.raises(ValueError, match="unknown ImageNet class"):
        shapes_net.similar_images(index, 1, focus_class="unicorn")


def test_adding_images_embeds_only_the_new_ones(shapes_net, image_dir, tmp_path, monkeypatch):
    shapes_net.build_index(image_dir, tmp_path / "index")
    draw_shape("green", "square", 300).save(image_dir / "green_square.png")
    embedded = []
    original = gallery.embed_images
    monkeypatch.setattr(
        gallery, "embed_images", lambda m, p, images: embedded.append(len(images)) or original(m, p, images)
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

    monkeypatch.setattr(gallery.os, "replace", crash)  # killed after writing new files, before the switch
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
    assert GalleryIndex.load(tmp_path / "index", other).metadata["model"] == gallery.model_fingerprint(other)
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
    with pytest.raises(ValueError, match="k must be a positive integer"):
        shapes_net.similar_images(index, 0, k=0)
    with pytest.raises(IndexError, match="gallery item 99 does not exist"):
        shapes_net.similar_images(index, 99)
    with pytest.raises(ValueError, match="no such file"):
        shapes_net.similar_images(index, str(tmp_path / "missing.png"))
    with pytest.raises(GalleryIndexError, match="no readable images"):
        build_index(shapes_net.model, shapes_net.processor, [image_dir / "broken.jpg"], tmp_path / "empty")


def test_a_moved_gallery_is_not_embedded_again(shapes_net, image_dir, tmp_path, monkeypatch):
    """A built Space ships its index; where it is unpacked, the photos' paths differ but not their bytes."""
    shapes_net.build_index(image_dir, tmp_path / "index")
    moved = image_dir.rename(tmp_path / "moved")
    monkeypatch.setattr(gallery, "embed_images", lambda *args: pytest.fail("an unchanged photo was embedded again"))
    index = shapes_net.build_index(moved, tmp_path / "index")
    assert len(index) == 4 and all(path.startswith(str(moved.resolve())) for path in index.paths)
