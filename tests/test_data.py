"""Dataset readers for the Flickr8k and COCO layouts, with their error cases."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from onenet_hf import DatasetError, read_coco, read_flickr8k, read_split


def _flickr(tmp_path, names=("a.jpg", "b.jpg"), captioned=("a.jpg", "b.jpg"), files=("a.jpg", "b.jpg")):
    (tmp_path / "images").mkdir(parents=True)
    for name in files:
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / name)
    lines = [f"{name}#{i}\t{name} caption {i} ." for name in captioned for i in range(5)]
    (tmp_path / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "Flickr_8k.trainImages.txt").write_text("\n".join(names) + "\n")
    return tmp_path


def test_flickr8k_reader(tmp_path):
    examples = read_flickr8k(_flickr(tmp_path), "train")
    assert [e.path.name for e in examples] == ["a.jpg", "b.jpg"]
    assert examples[1].captions[4] == "b.jpg caption 4 ."
    assert read_split(tmp_path, "train") == examples


def test_flickr8k_errors(tmp_path):
    root = _flickr(tmp_path / "missing_image", files=("a.jpg",))
    with pytest.raises(DatasetError, match=r"1 images with captions are missing .*b\.jpg"):
        read_flickr8k(root, "train")
    root = _flickr(tmp_path / "uncaptioned", captioned=("a.jpg",))
    with pytest.raises(DatasetError, match=r"1 images .* have no captions.*b\.jpg"):
        read_flickr8k(root, "train")
    with pytest.raises(DatasetError, match="missing Flickr8k dev split file"):
        read_flickr8k(root, "dev")
    with pytest.raises(DatasetError, match="unknown Flickr8k split 'val'"):
        read_flickr8k(root, "val")
    with pytest.raises(DatasetError, match="missing Flickr8k caption file"):
        read_flickr8k(tmp_path / "nowhere", "train")
    (root / "Flickr8k.token.txt").write_text("a.jpg no tab here\n")
    with pytest.raises(DatasetError, match="Flickr8k.token.txt:1: expected"):
        read_flickr8k(root, "train")


def _coco(tmp_path, annotations, files=("x.jpg", "y.jpg")):
    (tmp_path / "images").mkdir(parents=True)
    for name in files:
        Image.new("RGB", (8, 8)).save(tmp_path / "images" / name)
    data = {
        "images": [{"id": 1, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"}],
        "annotations": [{"image_id": i, "id": n, "caption": c} for n, (i, c) in enumerate(annotations)],
    }
    (tmp_path / "captions_train.json").write_text(json.dumps(data))
    return tmp_path


def test_coco_reader(tmp_path):
    root = _coco(tmp_path, [(1, "a cat"), (2, "a dog"), (1, "a kitten ")])
    examples = read_coco(root / "captions_train.json", root / "images")
    assert [(e.path.name, e.captions) for e in examples] == [
        ("x.jpg", ("a cat", "a kitten")),
        ("y.jpg", ("a dog",)),
    ]
    assert read_split(root, "train", "coco") == examples


def test_coco_errors(tmp_path):
    root = _coco(tmp_path / "orphan", [(1, "a cat"), (2, "a dog"), (7, "a ghost")])
    with pytest.raises(DatasetError, match="caption for unknown image id 7"):
        read_split(root, "train", "coco")
    root = _coco(tmp_path / "uncaptioned", [(1, "a cat")])
    with pytest.raises(DatasetError, match="have no captions.*y.jpg"):
        read_split(root, "train", "coco")
    root = _coco(tmp_path / "no_file", [(1, "a cat"), (2, "a dog")], files=("x.jpg",))
    with pytest.raises(DatasetError, match="missing from"):
        read_split(root, "train", "coco")
    (root / "captions_train.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not a COCO captions file"):
        read_split(root, "train", "coco")
    with pytest.raises(DatasetError, match="unknown dataset format"):
        read_split(root, "train", "voc")
