"""Readers for captioned-image datasets: the Flickr8k layout and COCO-style captions JSON."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import OneNetError

FLICKR8K_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


class DatasetError(OneNetError):
    """A dataset folder or file is missing or inconsistent; the message says which and how."""


@dataclass(frozen=True)
class CaptionedImage:
    """One image file and its reference captions."""

    path: Path
    captions: tuple[str, ...]


def _require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DatasetError(f"missing {what}: {path}")
    return path


def _examples(images: dict[str, Path], captions: dict[str, list[str]], where: str) -> list[CaptionedImage]:
    """Pair images with captions, failing loudly on either side left over."""
    missing_files = sorted(name for name, path in images.items() if not path.is_file())
    if missing_files:
        raise DatasetError(
            f"{len(missing_files)} images with captions are missing from {where}, e.g. {missing_files[:3]}"
        )
    uncaptioned = sorted(name for name in images if not captions.get(name))
    if uncaptioned:
        raise DatasetError(f"{len(uncaptioned)} images in {where} have no captions, e.g. {uncaptioned[:3]}")
    return [CaptionedImage(images[name], tuple(captions[name])) for name in images]


def read_flickr8k(root: str | Path, split: str) -> list[CaptionedImage]:
    """Images of one split (`train`, `dev` or `test`) with their five captions, in split-file order."""
    root = Path(root)
    if split not in FLICKR8K_SPLIT_FILES:
        raise DatasetError(f"unknown Flickr8k split {split!r}; choose one of {sorted(FLICKR8K_SPLIT_FILES)}")
    token_file = _require_file(root / "Flickr8k.token.txt", "Flickr8k caption file")
    split_file = _require_file(root / FLICKR8K_SPLIT_FILES[split], f"Flickr8k {split} split file")
    image_dir = root / "images" if (root / "images").is_dir() else root / "Flicker8k_Dataset"
    if not image_dir.is_dir():
        raise DatasetError(f"missing Flickr8k image folder: {root / 'images'}")
    captions: dict[str, list[str]] = defaultdict(list)
    for line_number, line in enumerate(token_file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        key, sep, caption = line.partition("\t")
        if not sep or "#" not in key:
            raise DatasetError(f"{token_file}:{line_number}: expected 'IMAGE#N<TAB>caption', got {line[:80]!r}")
        captions[key.rsplit("#", 1)[0]].append(caption.strip())
    names = [name.strip() for name in split_file.read_text(encoding="utf-8").splitlines() if name.strip()]
    return _examples({name: image_dir / name for name in names}, captions, str(image_dir))


def read_coco(captions_json: str | Path, image_dir: str | Path) -> list[CaptionedImage]:
    """Images of a COCO-style `captions_*.json` (`images` with `file_name`, `annotations` with `caption`)."""
    captions_json, image_dir = Path(captions_json), Path(image_dir)
    _require_file(captions_json, "COCO captions file")
    if not image_dir.is_dir():
        raise DatasetError(f"missing COCO image folder: {image_dir}")
    try:
        data = json.loads(captions_json.read_text(encoding="utf-8"))
        files = {entry["id"]: entry["file_name"] for entry in data["images"]}
        annotations = [(entry["image_id"], entry["caption"]) for entry in data["annotations"]]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{captions_json}: not a COCO captions file ({error!r})") from None
    captions: dict[str, list[str]] = defaultdict(list)
    for image_id, caption in annotations:
        if image_id not in files:
            raise DatasetError(f"{captions_json}: caption for unknown image id {image_id}: {caption[:60]!r}")
        captions[files[image_id]].append(caption.strip())
    return _examples({name: image_dir / name for name in files.values()}, captions, str(image_dir))


def read_split(data_dir: str | Path, split: str, data_format: str = "flickr8k") -> list[CaptionedImage]:
    """One split of a dataset folder: Flickr8k layout, or COCO layout (`captions_{split}.json` + `images/`)."""
    if data_format == "flickr8k":
        return read_flickr8k(data_dir, split)
    if data_format == "coco":
        return read_coco(Path(data_dir) / f"captions_{split}.json", Path(data_dir) / "images")
    raise DatasetError(f"unknown dataset format {data_format!r}; choose 'flickr8k' or 'coco'")


def read_coco_objects(instances_json: str | Path) -> dict[str, frozenset[str]]:
    """Each image file's annotated object categories (names of COCO's 80) from a COCO `instances_*.json`: the
    ground truth that object hallucination and object recall are measured against."""
    instances_json = _require_file(Path(instances_json), "COCO instances file")
    try:
        data = json.loads(instances_json.read_text(encoding="utf-8"))
        names = {entry["id"]: entry["name"] for entry in data["categories"]}
        objects: dict[str, set[str]] = {entry["file_name"]: set() for entry in data["images"]}
        files = {entry["id"]: entry["file_name"] for entry in data["images"]}
        for entry in data["annotations"]:
            objects[files[entry["image_id"]]].add(names[entry["category_id"]])
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise DatasetError(f"{instances_json}: not a COCO instances file ({error!r})") from None
    return {name: frozenset(categories) for name, categories in objects.items()}


__all__ = ["CaptionedImage", "DatasetError", "read_coco", "read_coco_objects", "read_flickr8k", "read_split"]
