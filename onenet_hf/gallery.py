"""A persisted gallery index, read side: open it, check it, search it by image representation.

Files in the index folder: `index.json` (model fingerprint, representation size, image paths and content
hashes, skipped files, build id, and the build's files) and, per build, the vectors (`*.npy`) and the Annoy
file. `indexing.py` writes them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import OneNetError
from .fingerprint import model_fingerprint
from .ranking import top_k_pairs

INDEX_FILE = "index.json"
INDEX_FORMAT = 2
EXACT_SEARCH_MAX_IMAGES = 20_000
ARRAYS = ("image_embeds", "pooled_features", "retrieval_embeds", "tag_embeds")
# Names a build gives its files: `image_embeds-<build>.npy`, `annoy-<build>.ann`, `index.json.<build>.tmp`.
BUILD_FILE = re.compile(
    rf"(?:(?:{'|'.join(ARRAYS)})-[0-9a-f]{{12}}\.npy|annoy-[0-9a-f]{{12}}\.ann|index\.json\.[0-9a-f]{{12}}\.tmp)"
)


class GalleryIndexError(OneNetError):
    """An index folder is missing, corrupt, or was made by another model; the message says which."""


@dataclass
class ImageMatch:
    """A gallery image, the score results are ordered by (best first), and its cosine with the query in the
    space searched. They differ only in `reranked` search, where the score is the decoder's re-ranking score."""

    path: str
    score: float
    cosine: float


class GalleryIndex:
    """Embedded gallery images and their vectors; nearest images by representation (Annoy or exact). The uses
    (`uses/similar_images.py`, `uses/search.py`) search its other vectors."""

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
                top_k_pairs(cosine_matrix(vector[None], self.image_embeds)[0], k, skip)
                for vector, skip in zip(vectors, exclude, strict=True)
            ]
        results = []
        for vector, skip in zip(vectors, exclude, strict=True):
            ids, distances = self.annoy.get_nns_by_vector(vector.tolist(), k + 1, search_k=-1, include_distances=True)
            pairs = [(i, 1.0 - d * d / 2.0) for i, d in zip(ids, distances, strict=True) if i != skip]
            results.append(pairs[:k])
        return results

    def matches(self, pairs: list[tuple[int, float]], cosines: np.ndarray | None = None) -> list[ImageMatch]:
        """ImageMatch of each (row, score) pair; `cosines` (N,) when the scores are not the cosines."""
        return [
            ImageMatch(self.paths[i], float(score), float(score if cosines is None else cosines[i]))
            for i, score in pairs
        ]


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
        isinstance(f, str) and BUILD_FILE.fullmatch(f) for f in files.values()
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


__all__ = [
    "EXACT_SEARCH_MAX_IMAGES",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageMatch",
    "cosine_matrix",
]
