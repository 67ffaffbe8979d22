"""Building a gallery index: embed images, write the index files atomically, own the index folder.

Ownership: a build writes only into a new or empty folder, or one that is already an index (marked, or
holding nothing but what builds write); it deletes only files that an earlier build listed in `index.json`
and leftovers named as a build names its files, never anything else. `index.json` is replaced last and
atomically, so a killed build leaves the previous index intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: builds of one index are not locked against each other
    fcntl = None

from .errors import OneNetError
from .fingerprint import file_hash, model_fingerprint
from .gallery import (
    ARRAYS,
    BUILD_FILE,
    INDEX_FILE,
    INDEX_FORMAT,
    GalleryIndex,
    GalleryIndexError,
)
from .image_processing_onenet import ImageLoadError, load_image

if TYPE_CHECKING:
    from .onnx_backend import OnnxOneNetBackend

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MARKER_FILE = ".onenet-index"  # marks a folder as an index; locked (flock) while a build writes
MAX_N_TREES = 1000  # Annoy trees; 50 reach 0.997 recall@10 on 1,000 images (README), more only cost time


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) under `folder`, recursively, in sorted order.

    Broken links and link loops with an image suffix are listed too, so that indexing reports them as
    skipped (with the reason) instead of leaving them out unsaid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryIndexError(f"image folder not found: {folder}")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and (p.is_file() or (p.is_symlink() and not p.exists()))
    )


@torch.inference_mode()
def embed_images(
    model, processor, images: Sequence, image_encoder: OnnxOneNetBackend | None = None
) -> dict[str, np.ndarray]:
    """Each image's gallery vectors (`OneNetModel.get_gallery_embeds`) as arrays; pooled features in fp16.
    `image_encoder`: an ONNX backend whose export gives pooled features runs the backbone."""
    pixel_values = processor(images=list(images))["pixel_values"]
    if image_encoder is None:
        embeds = model.get_gallery_embeds(pixel_values)
    else:
        image_embeds, pooled = image_encoder.get_image_and_pooled_features(pixel_values)
        embeds = model.get_gallery_embeds(image_embeds=image_embeds, pooled_features=pooled)
    arrays = {name: tensor.float().cpu().numpy() for name, tensor in embeds.items()}
    arrays["pooled_features"] = arrays["pooled_features"].astype(np.float16)
    return arrays


def check_index_folder(folder: str | Path, images: Sequence[str | Path] = ()) -> None:
    """Refuse, before any work, an index folder a build must not write into: an existing file, a folder that
    is or contains the images (`images`: the image folder, or the image paths), or a non-empty folder that is
    not an index. The index deletes files it wrote, so it keeps a folder of its own."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GalleryIndexError(f"{folder} is a file, not a folder: give a new folder for the index")
    resolved = Path(os.path.realpath(folder))
    for image in images:
        image = Path(os.path.realpath(image))
        if image == resolved or resolved in image.parents:
            raise GalleryIndexError(
                f"the index folder {folder} is or contains the images to index ({image}); "
                "give the index a folder of its own"
            )
    if folder.is_dir() and any(folder.iterdir()) and not _is_index_folder(folder):
        raise GalleryIndexError(
            f"{folder} is not empty and holds no gallery index; give a new or empty folder "
            "(an index keeps a folder of its own and deletes only files it wrote)"
        )


def _is_index_folder(folder: Path) -> bool:
    """Marked by a build, or (an index from before the marker) holding nothing but what builds write."""
    if (folder / MARKER_FILE).is_file():
        return True
    names = [entry.name for entry in folder.iterdir()]
    return INDEX_FILE in names and all(name == INDEX_FILE or BUILD_FILE.fullmatch(name) for name in names)


@contextlib.contextmanager
def _build_lock(folder: Path, timeout: float | None) -> Iterator[None]:
    """Hold the index folder's lock (flock on its marker file) for a whole build. A second build waits for it,
    then extends what the first wrote; `timeout` seconds (None: no limit) bound the wait."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / MARKER_FILE, "a", encoding="utf-8") as marker:
        start, waiting = time.monotonic(), False
        while fcntl is not None:
            try:
                fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if timeout is not None and time.monotonic() - start >= timeout:
                    raise GalleryIndexError(
                        f"another build of the index at {folder} is running (waited {timeout:g} s); "
                        "run this again when it has finished"
                    ) from None
                if not waiting:
                    tqdm.write(f"waiting for another build of the index at {folder} to finish", file=sys.stderr)
                    waiting = True
                time.sleep(0.1)
        try:
            if marker.tell() == 0:
                marker.write("A OneNet gallery index: builds lock this file and delete only files they wrote.\n")
                marker.flush()
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(marker, fcntl.LOCK_UN)


def build_index(
    model,
    processor,
    images: str | Path | Sequence[str | Path],
    folder: str | Path,
    batch_size: int = 32,
    n_trees: int = 50,
    rebuild: bool = False,
    lock_timeout: float | None = None,
) -> GalleryIndex:
    """Embed every image of a folder (or a list of paths) and write the index to `folder`.

    Images already in an index at `folder` (same content, wherever they now lie) are not embedded again; an
    index there from another model or format, or a corrupt one, is replaced. Unreadable files are skipped and
    listed in the metadata (`skipped`), never fatal. `folder` must be new, empty or an index
    (`check_index_folder`); a build running on it meanwhile is waited for (up to `lock_timeout` seconds;
    None: no limit).
    """
    folder = Path(folder)
    if not isinstance(n_trees, int) or not 1 <= n_trees <= MAX_N_TREES:
        raise OneNetError(f"n_trees must be 1 to {MAX_N_TREES}, got {n_trees!r}")
    if isinstance(images, (str, Path)):
        paths, sources = list_images(images), [Path(images)]
    else:
        paths = sources = [Path(p) for p in images]
    check_index_folder(folder, sources)
    fingerprint = model_fingerprint(model)
    with _build_lock(folder, lock_timeout):
        previous: dict[str, dict[str, np.ndarray]] = {}  # by content: a moved or copied gallery is not re-embedded
        if (folder / INDEX_FILE).exists() and not rebuild:
            try:
                old = GalleryIndex.load(folder, model)
            except GalleryIndexError as error:  # another model's, an older or a corrupt index: of no use
                tqdm.write(f"re-embedding every image: {error}", file=sys.stderr)
            else:
                for row, content in enumerate(old.metadata["hashes"]):
                    previous[content] = {name: np.asarray(getattr(old, name)[row]) for name in ARRAYS}
        kept, hashes, skipped, rows = _embed_new(model, processor, paths, previous, batch_size)
        if not kept:
            raise GalleryIndexError(f"no readable images among {len(paths)} files; skipped: {skipped[:3]}")
        return _write_index(folder, fingerprint, kept, hashes, skipped, rows, n_trees)


def _embed_new(model, processor, paths: Sequence[Path], previous: dict, batch_size: int):
    """Rows of every readable image: reused from `previous` (same content) or embedded in batches."""
    rows: dict[str, list[np.ndarray]] = {name: [] for name in ARRAYS}
    kept, hashes, skipped, pending = [], [], [], []

    def flush() -> None:
        if pending:
            embedded = embed_images(model, processor, [image for _, _, image in pending])
            for row, (path, content, _) in enumerate(pending):
                kept.append(path)
                hashes.append(content)
                for name in ARRAYS:
                    rows[name].append(embedded[name][row])
            pending.clear()

    for path in tqdm(paths, desc="indexing images", unit="img"):
        key = os.path.realpath(path)  # unlike Path.resolve, no error on a link loop (reported below)
        try:
            content = file_hash(path)
            if content in previous:
                flush()
                kept.append(key)
                hashes.append(content)
                for name in ARRAYS:
                    rows[name].append(previous[content][name])
                continue
            pending.append((key, content, load_image(path)))
        except ImageLoadError as error:
            skipped.append({"path": os.path.abspath(path), "reason": str(error)})
            continue
        except OSError as error:  # unreadable, a broken link, a link loop
            skipped.append({"path": os.path.abspath(path), "reason": f"{path}: {error.strerror or error}"})
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return kept, hashes, skipped, rows


def _write_index(folder: Path, fingerprint: str, paths, hashes, skipped, rows, n_trees: int) -> GalleryIndex:
    """Write a build's files, switch `index.json` to them atomically, then delete what earlier builds wrote
    (their listed files and the leftovers of killed ones: names a build gives its files), nothing else.
    The caller holds the folder's lock, so no other build is half-way."""
    from annoy import AnnoyIndex

    build = uuid.uuid4().hex[:12]
    files = {name: f"{name}-{build}.npy" for name in ARRAYS} | {"annoy": f"annoy-{build}.ann"}
    arrays = {name: np.stack(rows[name]) for name in ARRAYS}
    for name in ARRAYS:
        np.save(folder / files[name], arrays[name])
    annoy = AnnoyIndex(arrays["image_embeds"].shape[1], "angular")
    for row, vector in enumerate(arrays["image_embeds"]):
        annoy.add_item(row, vector.tolist())
    annoy.build(n_trees, n_jobs=-1)
    annoy.save(str(folder / files["annoy"]))
    annoy.unload()
    metadata = {
        "format": INDEX_FORMAT,
        "model": fingerprint,
        "representation_size": int(arrays["image_embeds"].shape[1]),
        "metric": "angular",
        "n_trees": n_trees,
        "build": build,
        "files": files,
        "paths": paths,
        "hashes": hashes,
        "skipped": skipped,
    }
    tmp = folder / f"{INDEX_FILE}.{build}.tmp"
    tmp.write_text(json.dumps(metadata, indent=1), encoding="utf-8")
    os.replace(tmp, folder / INDEX_FILE)  # the switch: before it the old index is whole, after it the new one
    for stale in folder.iterdir():
        if BUILD_FILE.fullmatch(stale.name) and stale.name not in files.values() and not stale.is_dir():
            stale.unlink()
    return GalleryIndex.load(folder)


__all__ = ["IMAGE_SUFFIXES", "MAX_N_TREES", "build_index", "check_index_folder", "embed_images", "list_images"]
