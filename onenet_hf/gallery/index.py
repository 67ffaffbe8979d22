"""A persisted gallery index, read side: open it, check it, search it by image representation.

Files in the index folder: `index.sqlite` (SQLite, WAL: model fingerprint, each image's path, content hash,
size, modification time and place in a shard, the skipped files, the shards and the builds) and the shards:
per shard, one `.npy` file per array (`shard-<id>.<array>.npy`) and, for a large one, an ANN file per searched
array (`shard-<id>.ivfpq`, `.hnsw` or `.annoy` for the image representations, `shard-<id>.<array>.ivfpq` and so
on for the retrieval and tag spaces that text queries search). A shard is written once and never changed; a build
adds one and registers it in one SQLite transaction, so it writes what changed, not the gallery. `build.py`
writes them.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import weakref
from array import array as int64_array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from tokenize import TokenError

import numpy as np

from ..errors import OneNetError
from ..fingerprint import model_fingerprint
from ..representations import ARRAY_DTYPES, ARRAYS
from ..utils.messages import first_line, shorten
from ..utils.ranking import top_k_pairs
from ..utils.threads import one_blas_thread
from .ann import ANN_METHODS, IVF_PROBE_SHARE, RETRIEVAL_PROBE_SHARE, TAG_PROBE_SHARE, ShardAnn, unit_rows

INDEX_DB = "index.sqlite"
INDEX_FORMAT = 3
LEGACY_INDEX_FILE = "index.json"  # format 2: one JSON file and whole arrays, rewritten by every build
EXACT_SEARCH_MAX_IMAGES = 20_000  # a gallery, or shard, up to this size is searched exactly
FINITE_CHECK_ROWS = 4096  # rows checked for NaN and infinity at a time: a mapped shard is never copied whole
# The arrays queries search by nearest neighbour, and the share of an ivfpq file's lists each query scans: images
# by image representation; texts in the retrieval space (describe to search) and the tag space (`glove` search).
SEARCH_ARRAYS = {
    "image_embeds": IVF_PROBE_SHARE,
    "retrieval_embeds": RETRIEVAL_PROBE_SHARE,
    "tag_embeds": TAG_PROBE_SHARE,
}
LEGACY_ANN_ARRAYS = ("image_embeds",)  # the ANN files of an index built before text queries had theirs
# Names a build gives its files: a shard's arrays and ANN files, written before SQLite registers them.
SHARD_FILE = re.compile(
    rf"shard-(?P<shard>[0-9a-f]{{12}})\.(?:(?:{'|'.join(ARRAYS)})\.npy|"
    rf"(?:(?:{'|'.join(name for name in SEARCH_ARRAYS if name != 'image_embeds')})\.)?(?:{'|'.join(ANN_METHODS)}))"
)
# Names format-2 builds gave their files: an upgrade deletes them once their vectors are in a shard.
LEGACY_BUILD_FILE = re.compile(
    rf"(?:(?:{'|'.join(ARRAYS)})-[0-9a-f]{{12}}\.npy|annoy-[0-9a-f]{{12}}\.ann|index\.json\.[0-9a-f]{{12}}\.tmp)"
)


class GalleryIndexError(OneNetError):
    """An index folder is missing, corrupt, or was made by another model; the message says which."""


def corrupt(folder: Path, problem: str) -> GalleryIndexError:
    """The one-line error of a damaged index: the folder, the problem (naming the file) and the way out."""
    return GalleryIndexError(
        f"corrupt gallery index at {folder}: {problem}; rebuild it: onenet index IMAGES --out {folder} --rebuild"
    )


@dataclass
class ImageMatch:
    """A gallery image, the score results are ordered by (best first), and its cosine with the query in the
    space searched. They differ only in `reranked` search, where the score is the decoder's re-ranking score."""

    path: str
    score: float
    cosine: float


def shard_files(name: str) -> dict[str, str]:
    """The array files of shard `name`, by array."""
    return {array: f"shard-{name}.{array}.npy" for array in ARRAYS}


def ann_files(name: str, ann: str | None, arrays: Sequence[str] = tuple(SEARCH_ARRAYS)) -> dict[str, str]:
    """The ANN files of shard `name` (none when it has no ANN method), by the array each searches; the image
    representations' keeps the name it had before the other arrays had theirs."""
    if ann is None:
        return {}
    return {
        array: f"shard-{name}.{ann}" if array == "image_embeds" else f"shard-{name}.{array}.{ann}" for array in arrays
    }


def check_finite_rows(folder: Path, rows: np.ndarray, file: str) -> None:
    """Refuse rows of `file` holding NaN or infinity (a NaN row matches nothing, silently), read FINITE_CHECK_ROWS
    rows at a time: a mapped shard is never copied whole."""
    for start in range(0, len(rows), FINITE_CHECK_ROWS):
        if not np.isfinite(rows[start : start + FINITE_CHECK_ROWS]).all():
            raise corrupt(folder, f"{file} holds NaN or infinite values")


@dataclass
class Shard:
    """One shard as the index sees it: its files, how many rows it holds (`size`), and which of them are live
    gallery rows (`positions`, ascending; rows of deleted or changed images are not), from gallery row `first_row`."""

    name: str
    size: int
    ann: str | None
    positions: np.ndarray
    first_row: int
    folder: Path = Path()
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    ann_indexes: dict[str, ShardAnn] = field(default_factory=dict)  # by the array each searches
    finite: set[str] = field(default_factory=set)  # arrays already checked for NaN and infinity
    _unit_live: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)  # a large shard's array files, opened for reading rows

    @cached_property
    def live(self) -> np.ndarray | None:
        """Which positions are live (bool, `size`), or None when all are."""
        if len(self.positions) == self.size:
            return None
        mask = np.zeros(self.size, dtype=bool)
        mask[self.positions] = True
        return mask

    @cached_property
    def live_bitmap(self) -> np.ndarray | None:
        """`live` packed a bit per position (little-endian bytes), as faiss's IDSelectorBitmap reads it."""
        return None if self.live is None else np.packbits(self.live, bitorder="little")

    @cached_property
    def live_share(self) -> float:
        return len(self.positions) / max(self.size, 1)

    def unit_live(self, name: str) -> np.ndarray:
        """The live rows of one array at unit length, kept for the exact search of a small shard."""
        if name not in self._unit_live:
            self._unit_live[name] = unit_rows(self.live_rows(name))
        return self._unit_live[name]

    def read_rows(self, name: str, positions: np.ndarray) -> np.ndarray:
        """Rows of one array at shard `positions` (float32, in the order asked), checked to be finite. A large
        shard's rows are read with pread, not through its memory map: mapped pages stay in this process's resident
        memory (16 at a time, as the kernel maps around each fault), and a query's scattered rows would add up to the
        whole file; read, they stay in the OS's file cache alone."""
        array, file = self.arrays[name], self.files.get(name)
        if file is None:
            rows = np.asarray(array[np.asarray(positions)], dtype=np.float32)
        else:
            size, positions = array.shape[1] * array.dtype.itemsize, np.asarray(positions)
            if len(positions) and np.array_equal(positions, np.arange(positions[0], positions[0] + len(positions))):
                data = os.pread(file, size * len(positions), array.offset + int(positions[0]) * size)  # one range
            else:
                data = b"".join([os.pread(file, size, array.offset + int(p) * size) for p in positions])
            if len(data) != size * len(positions):
                raise corrupt(self.folder, f"{shard_files(self.name)[name]} is shorter than its header says")
            rows = np.frombuffer(data, dtype=array.dtype).reshape(len(positions), -1).astype(np.float32)
        if not np.isfinite(rows).all():
            raise corrupt(self.folder, f"{shard_files(self.name)[name]} holds NaN or infinite values")
        return rows

    def open_files(self) -> None:
        """Open a large shard's array files for `read_rows` (closed with the shard); opened with the index, so a
        later build that replaces the shard cannot take them away."""
        if self.ann is None or not hasattr(os, "pread"):
            return
        for name, file in shard_files(self.name).items():
            descriptor = os.open(self.folder / file, os.O_RDONLY)
            self.files[name] = descriptor
            weakref.finalize(self, os.close, descriptor)

    def blocks(self, name: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The live rows of one array, FINITE_CHECK_ROWS positions at a time: (positions, float32 rows)."""
        for start in range(0, self.size, FINITE_CHECK_ROWS):
            block = np.arange(start, min(start + FINITE_CHECK_ROWS, self.size))
            rows = self.read_rows(name, block)
            if self.live is not None:
                block, rows = block[self.live[block]], rows[self.live[block]]
            if len(block):
                yield block, rows

    def scan(self, name: str, score: Callable[[np.ndarray], np.ndarray], k: int) -> list[tuple[int, float]]:
        """The k best (shard position, score) pairs of the live rows of one array by `score` (rows -> scores), a
        block at a time: an exact pass that never holds a large shard in memory."""
        found: list[tuple[int, float]] = []
        for block, rows in self.blocks(name):
            found += [(int(block[i]), value) for i, value in top_k_pairs(score(rows), k)]
            found = sorted(found, key=lambda pair: -pair[1])[:k]
        return found

    def live_rows(self, name: str) -> np.ndarray:
        """The live rows of one array, in gallery order (a view when every row is live), checked to be finite."""
        self.check_finite(name)
        array = self.arrays[name]
        return array if self.live is None else array[self.positions]

    def check_finite(self, name: str) -> None:
        """Refuse an array holding NaN or infinity (a NaN row matched nothing, silently), checked on its first use
        rather than at load: a query to a large gallery's ANN files reads few of its rows."""
        if name in self.finite:
            return
        check_finite_rows(self.folder, self.arrays[name], shard_files(self.name)[name])
        self.finite.add(name)

    def row(self, position: int) -> int:
        return self.first_row + int(np.searchsorted(self.positions, position))


class _GalleryArrays(Mapping):
    """Each array over the whole gallery, joined from the shards' live rows on first use (memory-mapped, not
    copied, when the gallery is one shard with every row live)."""

    def __init__(self, shards: Sequence[Shard]):
        self._shards, self._joined = shards, {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._joined:
            parts = [shard.live_rows(name) for shard in self._shards]
            self._joined[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return self._joined[name]

    def __iter__(self) -> Iterator[str]:
        return iter(ARRAYS)

    def __len__(self) -> int:
        return len(ARRAYS)


class GalleryIndex:
    """Embedded gallery images and their vectors; nearest images by representation (per-shard ANN, or exact).
    The uses (`uses/similar_images.py`, `uses/search.py`) search its other vectors."""

    def __init__(self, folder: Path, metadata: dict, arrays: Mapping[str, np.ndarray], shards: Sequence[Shard] = ()):
        self.folder, self.metadata = folder, metadata
        self.paths: list[str] = metadata["paths"]
        self._arrays, self.shards = arrays, list(shards)

    image_embeds = property(lambda self: self._arrays["image_embeds"], doc="(N, hidden_size) image representations")
    pooled_features = property(lambda self: self._arrays["pooled_features"], doc="(N, 1280) pooled backbone, fp16")
    retrieval_embeds = property(lambda self: self._arrays["retrieval_embeds"], doc="(N, d) describe-to-search side")
    tag_embeds = property(lambda self: self._arrays["tag_embeds"], doc="(N, d) tag-space side")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def missing_ann_notice(self) -> str | None:
        """One line for an index whose large shards lack the text spaces' ANN files (an older onenet built it),
        saying how to add them; None when nothing lacks."""
        if not any(shard.ann for shard in self.shards) or set(self.metadata["ann_arrays"]) == set(SEARCH_ARRAYS):
            return None
        return (
            f"the gallery index at {self.folder} has no ANN files for text search (an older onenet made it), so text "
            f"queries read whole arrays; add them, embedding nothing again: onenet index IMAGES --out {self.folder}"
        )

    def check_finite(self) -> None:
        """Check every array of every shard for NaN and infinity now (each is otherwise checked on its first use)."""
        for shard in self.shards:
            for name in ARRAYS:
                shard.check_finite(name)

    @cached_property
    def _row_of_path(self) -> dict[str, int]:
        return {path: row for row, path in enumerate(self.paths)}

    @cached_property
    def _row_of_content(self) -> dict[str, int]:
        return {content: row for row, content in reversed(list(enumerate(self.metadata["hashes"])))}

    def row_of(self, path: str | None = None, content: str | None = None) -> int | None:
        """The gallery row of a stored path (as the index stores it: real path), else of the first image with
        content hash `content`; None when neither is in the gallery."""
        if path is not None and path in self._row_of_path:
            return self._row_of_path[path]
        return self._row_of_content.get(content) if content is not None else None

    @classmethod
    def load(cls, folder: str | Path, model=None) -> GalleryIndex:
        """Open an index; with `model`, refuse an index that another model made.

        Anything malformed is a `GalleryIndexError` (one line). Should a build replace a shard while this reads
        the index (the shard's files then go), the index is read once more.
        """
        folder = Path(folder)
        for attempt in range(2):
            metadata, shards = read_catalogue(folder)
            try:
                for shard in shards:
                    for name, file in shard_files(shard.name).items():
                        shard.arrays[name] = _load_array(folder, file)
                    shard.open_files()
                    # opened now: a later build may replace the shard and delete them
                    for name, file in ann_files(shard.name, shard.ann, metadata["ann_arrays"]).items():
                        if not (folder / file).is_file():
                            raise FileNotFoundError(2, "missing", str(folder / file))
                        shard.ann_indexes[name] = _open_ann(shard, folder / file, name)
            except GalleryIndexError:
                raise  # already the one line, which wrapping again would repeat
            except FileNotFoundError as error:
                if attempt == 0:
                    continue  # a build replaced a shard meanwhile: read the catalogue again
                raise corrupt(folder, f"{Path(str(error.filename)).name} is missing") from None
            except (OSError, ValueError, EOFError) as error:
                raise corrupt(folder, first_line(error)) from None
            break
        if model is not None and metadata["model"] != model_fingerprint(model):
            raise GalleryIndexError(
                f"the gallery index at {folder} was made by another model (fingerprint {metadata['model']}, "
                f"this model is {model_fingerprint(model)}); rebuild it with this model: onenet index"
            )
        _check_arrays(folder, shards, _widths(metadata["representation_size"], model))
        return cls(folder, metadata, _GalleryArrays(shards), shards)

    def nearest(
        self,
        vectors: np.ndarray,
        k: int,
        exact: bool | None = None,
        exclude: Sequence[int | None] = (),
        array: str = "image_embeds",
    ) -> list[list[tuple[int, float]]]:
        """The k nearest gallery rows (cosine) to each vector in the space of `array` (one of SEARCH_ARRAYS: image
        representations, or a text's retrieval- or tag-space vector); exact when small or asked, otherwise each
        large shard's ANN file and the small shards exactly, merged. A large shard without that array's ANN file
        (an older index) is searched exactly, a block at a time."""
        with one_blas_thread():  # small products: BLAS's spinning workers would slow the torch work after them
            return self._nearest(np.atleast_2d(np.asarray(vectors, dtype=np.float32)), k, exact, exclude, array)

    def _nearest(
        self, vectors: np.ndarray, k: int, exact: bool | None, exclude: Sequence[int | None], array: str
    ) -> list[list[tuple[int, float]]]:
        k = min(k, len(self))
        exclude = list(exclude) or [None] * len(vectors)
        if exact is None:
            exact = len(self) <= EXACT_SEARCH_MAX_IMAGES
        if exact or not self.shards:
            return [
                top_k_pairs(cosine_matrix(vector[None], self._arrays[array])[0], k, skip)
                for vector, skip in zip(vectors, exclude, strict=True)
            ]
        results = []
        for vector, skip in zip(vectors, exclude, strict=True):
            unit = unit_rows(vector[None])[0]
            found: list[tuple[int, float]] = []
            for shard in self.shards:
                if shard.ann is None:
                    pairs = top_k_pairs(shard.unit_live(array) @ unit, k + 1)
                    found += [(shard.first_row + i, s) for i, s in pairs]
                    continue
                if array in shard.ann_indexes:
                    pairs = shard.ann_indexes[array].search(vector, k + 1, shard)
                else:
                    pairs = shard.scan(array, lambda rows, unit=unit: unit_rows(rows) @ unit, k + 1)
                found += [(shard.row(position), score) for position, score in pairs]
            found.sort(key=lambda pair: -pair[1])
            results.append([pair for pair in found if pair[0] != skip][:k])
        return results

    def scan(
        self, name: str, score: Callable[[np.ndarray], np.ndarray], k: int, skip: int | None = None
    ) -> list[tuple[int, float]]:
        """The k best (gallery row, score) pairs by `score` (rows of array `name` -> scores), leaving out row `skip`:
        an exact pass over every live row, a block at a time, for queries no ANN file can serve (class focus)."""
        if not self.shards:
            return top_k_pairs(score(np.asarray(self._arrays[name], dtype=np.float32)), k, skip)
        found = [
            (shard.row(position), value) for shard in self.shards for position, value in shard.scan(name, score, k + 1)
        ]
        found.sort(key=lambda pair: -pair[1])
        return [pair for pair in found if pair[0] != skip][:k]

    def width(self, name: str) -> int:
        """The width of one array's rows, read without joining the shards."""
        return (self.shards[0].arrays if self.shards else self._arrays)[name].shape[1]

    def blocks(self, name: str) -> Iterator[np.ndarray]:
        """Every live row of one array in gallery order, a block of float32 rows at a time (for statistics over the
        gallery that no single query needs whole)."""
        if not self.shards:
            yield np.asarray(self._arrays[name], dtype=np.float32)
        for shard in self.shards:
            for _, rows in shard.blocks(name):
                yield rows

    def rows(self, name: str, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Rows of one array by gallery row (float32, in the order asked), read from the shards: what a query reads
        of a large gallery, never the whole array."""
        rows = np.asarray(rows, dtype=np.int64)
        if not self.shards:
            return np.asarray(self._arrays[name][rows], dtype=np.float32)
        firsts = np.array([shard.first_row for shard in self.shards])
        owners = np.searchsorted(firsts, rows, side="right") - 1
        out = np.empty((len(rows), self.width(name)), dtype=np.float32)
        for owner in np.unique(owners):
            shard, mine = self.shards[owner], owners == owner
            out[mine] = shard.read_rows(name, shard.positions[rows[mine] - shard.first_row])
        return out

    def matches(self, pairs: list[tuple[int, float]], cosines: Mapping[int, float] | None = None) -> list[ImageMatch]:
        """ImageMatch of each (row, score) pair; `cosines` (by row) when the scores are not the cosines."""
        return [
            ImageMatch(self.paths[i], float(score), float(score if cosines is None else cosines[i]))
            for i, score in pairs
        ]


def _load_array(folder: Path, file: str) -> np.ndarray:
    """A shard array, memory-mapped; an unreadable one (not a regular file, truncated, a damaged header, Python
    objects) is an error naming the file. A missing one is FileNotFoundError, for the caller to read the catalogue
    again."""
    try:
        if not stat.S_ISREG(os.stat(folder / file).st_mode):  # a FIFO or a device would block np.load, or never end
            raise ValueError("not a regular file")
        return np.load(folder / file, mmap_mode="r")
    except FileNotFoundError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, TypeError, KeyError, TokenError) as error:
        raise corrupt(folder, f"{file}: {first_line(error)}") from None  # numpy parses a damaged header in many ways


def _widths(representation_size: int, model) -> dict[str, int]:
    """Each array's width as far as it is known: the representation's from the catalogue, every one with the model."""
    if model is None:
        return {"image_embeds": representation_size}
    config = model.config
    return {
        "image_embeds": representation_size,
        "pooled_features": config.backbone_hidden_size,
        "retrieval_embeds": config.retrieval_embedding_size,
        "tag_embeds": config.tag_embedding_size,
    }


def _check_arrays(folder: Path, shards: Sequence[Shard], widths: dict[str, int]) -> None:
    """Each shard array's dtype and shape (`ARRAY_DTYPES`; a width `widths` leaves out is the same in every shard),
    from the .npy headers alone; the error names the file."""
    widths = dict(widths)
    for shard in shards:
        for name, array in shard.arrays.items():
            dtype = ARRAY_DTYPES[name]
            if (
                array.ndim != 2
                or array.dtype != dtype
                or array.shape != (shard.size, widths.setdefault(name, array.shape[1]))
            ):
                wanted = f"{dtype} ({shard.size}, {widths.get(name, 'd')})"
                file = shard_files(shard.name)[name]
                raise corrupt(folder, f"{file} holds {array.dtype} {array.shape}, not {wanted} as the catalogue says")


def _open_ann(shard: Shard, path: Path, array: str) -> ShardAnn:
    try:
        width = shard.arrays[array].shape[-1] if shard.arrays[array].ndim else 0  # a bad shape is refused after
        return ShardAnn(shard.ann, path, width, array, SEARCH_ARRAYS[array])
    except RuntimeError as error:  # faiss: not an index file
        raise GalleryIndexError(f"corrupt ANN file {path.name} in {path.parent}: {error}") from None


def connect(folder: Path, read_only: bool) -> sqlite3.Connection:
    """A connection to the index's SQLite file (WAL: a reader never blocks a build, nor a build a reader).

    A reader opens it writable when it may (never creating it), so the last connection to close tidies the WAL
    files away; read-only (`mode=ro`) in a folder it cannot write."""
    database = folder / INDEX_DB
    if not read_only:
        connection = sqlite3.connect(database, timeout=30)
        connection.execute("PRAGMA journal_mode=WAL")
        return connection
    uri = database.resolve().as_uri()
    mode = "rw" if os.access(folder, os.W_OK) and os.access(database, os.W_OK) else "ro"
    return sqlite3.connect(f"{uri}?mode={mode}", uri=True, timeout=30)


def check_index_present(folder: str | Path) -> Path:
    """A folder holding an index of this format (its catalogue), or a GalleryIndexError saying how to build or
    upgrade one; cheap, so the CLI checks `--index` before the model loads."""
    folder = Path(folder)
    if not (folder / INDEX_DB).is_file():
        if (folder / LEGACY_INDEX_FILE).is_file():
            raise GalleryIndexError(
                f"the gallery index at {folder} has an older format (2, {LEGACY_INDEX_FILE}); upgrade it by running "
                f"onenet index IMAGES --out {folder} once (its vectors are reused, nothing is embedded again)"
            )
        raise GalleryIndexError(f"no gallery index at {folder} ({INDEX_DB} missing); build one: onenet index")
    return folder


def read_catalogue(folder: Path) -> tuple[dict, list[Shard]]:
    """The index's metadata (model, representation size, paths and hashes in gallery order, skipped files,
    build and what it changed, ann) and its shards (arrays not yet opened), checked; GalleryIndexError naming the
    first problem."""
    check_index_present(folder)
    try:
        connection = connect(folder, read_only=True)
        try:
            connection.execute("BEGIN")  # one read snapshot: a build committing meanwhile is seen whole or not at all
            info = dict(connection.execute("SELECT key, value FROM info"))
            shard_rows = connection.execute("SELECT seq, name, size, ann FROM shards ORDER BY seq").fetchall()
            skipped = [{"path": p, "reason": r} for p, r in connection.execute("SELECT path, reason FROM skipped")]
            changes = connection.execute(
                "SELECT embedded, reused, dropped FROM builds WHERE id = ?", (info.get("build"),)
            ).fetchone()
            # read row by row, never fetched whole: 106.8 MiB less at the load of a 1M gallery (text search page)
            image_rows = connection.execute("SELECT path, hash, shard, position FROM images ORDER BY shard, position")
            try:
                metadata, shards = _checked_catalogue(folder, info, shard_rows, image_rows, skipped)
            finally:  # a statement left open keeps its read lock, even closed, while an error's traceback holds it
                image_rows.close()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise corrupt(folder, f"{INDEX_DB}: {error}") from None
    metadata["build_changes"] = dict(zip(("embedded", "reused", "dropped"), changes, strict=True)) if changes else None
    return metadata, shards


def _checked_catalogue(folder: Path, info: dict, shard_rows, image_rows, skipped) -> tuple[dict, list[Shard]]:
    def problem(text: str) -> GalleryIndexError:
        return corrupt(folder, f"{INDEX_DB} {text}")

    if info.get("format") != str(INDEX_FORMAT):
        raise problem(f"has format {shorten(info.get('format'), 20)}, not {INDEX_FORMAT}")
    for key in ("model", "representation_size", "build", "ann"):
        if not info.get(key) or not isinstance(info[key], str):
            raise problem(f"has no {key!r}")
    if not info["representation_size"].isdecimal():
        raise problem("has a representation_size that is not a number")
    ann_arrays = tuple(str(info.get("ann_arrays", ",".join(LEGACY_ANN_ARRAYS))).split(","))
    if "image_embeds" not in ann_arrays or not set(ann_arrays) <= set(SEARCH_ARRAYS):
        raise problem(f"lists ANN arrays other than a build writes: {shorten(','.join(ann_arrays), 60)}")
    shards, by_seq = [], {}
    for seq, name, size, ann in shard_rows:  # SQLite keeps any value in any column: each one's type is checked
        named = isinstance(name, str) and SHARD_FILE.fullmatch(f"shard-{name}.hnsw")
        if not named or ann not in (None, *ANN_METHODS):
            raise problem(f"lists a shard other than a build writes: {shorten(name, 20)}")
        if not isinstance(size, int) or size < 0:
            raise problem(f"gives shard {name} a size that is not a count: {shorten(size, 20)}")
        by_seq[seq] = Shard(name, size, ann, np.empty(0, dtype=np.int64), 0, folder)
    places = {seq: int64_array("q") for seq in by_seq}  # 8 bytes a position, not a Python int's 36
    paths, hashes = [], []
    for path, content, seq, position in image_rows:
        if not isinstance(path, str) or not isinstance(content, str):
            raise problem(f"lists an image whose path or hash is not text: {shorten(path, 60)}")
        if seq not in by_seq or not isinstance(position, int) or not 0 <= position < by_seq[seq].size:
            raise problem(f"places {shorten(path, 60)} outside its shards")
        places[seq].append(position)
        paths.append(path)
        hashes.append(content)
    first_row = 0
    for seq, shard in by_seq.items():
        if places[seq]:
            positions = np.frombuffer(places[seq], dtype=np.int64)  # ascending, from the query's ORDER BY
            if np.any(positions[1:] == positions[:-1]):
                raise problem(f"places two images at one position of shard {shard.name}")
            shard.positions, shard.first_row = positions, first_row
            first_row += len(places[seq])
            shards.append(shard)
    metadata = {
        "format": INDEX_FORMAT,
        "model": info["model"],
        "representation_size": int(info["representation_size"]),
        "build": info["build"],
        "ann": info["ann"],
        "ann_arrays": ann_arrays,
        "paths": paths,
        "hashes": hashes,
        "skipped": skipped,
    }
    return metadata, shards


def cosine_matrix(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Cosine similarity (Q, N) between query rows and gallery rows (exact search)."""
    return unit_rows(queries) @ unit_rows(gallery).T


__all__ = [
    "EXACT_SEARCH_MAX_IMAGES",
    "INDEX_DB",
    "GalleryIndex",
    "GalleryIndexError",
    "ImageMatch",
    "SEARCH_ARRAYS",
    "check_index_present",
    "cosine_matrix",
]
