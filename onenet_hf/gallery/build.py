"""Building a gallery index: embed new images into a new shard, register it in SQLite, own the index folder.

A build looks at each listed file's size and modification time; only new or changed files are hashed, and
only content the index does not hold yet is embedded. It writes one new shard (the new rows) and commits the
catalogue change (rows added, dropped, moved) in one SQLite transaction: a killed build leaves the previous
index intact and loadable. Ownership: a build writes only into a new or empty folder, or one that is already
an index; it deletes only shard files the catalogue no longer lists (and format-2 files after an upgrade),
never anything else. One build at a time: a second is refused (or waits `lock_timeout` seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

try:
    import fcntl
except ImportError:  # Windows: builds of one index are not locked against each other
    fcntl = None

from ..errors import OneNetError
from ..fingerprint import file_hash, model_fingerprint
from ..representations import ARRAY_DTYPES, ARRAYS
from ..utils.atomic_files import check_output_folder, link_target
from ..utils.messages import escape_controls, printable_path
from .ann import ANN_METHODS, ANNOY_TREES, build_ann
from .embedding import Embedder, GalleryFile, local_embedder
from .index import (
    EXACT_SEARCH_MAX_IMAGES,
    INDEX_DB,
    INDEX_FORMAT,
    LEGACY_ANN_ARRAYS,
    LEGACY_BUILD_FILE,
    LEGACY_INDEX_FILE,
    SEARCH_ARRAYS,
    SHARD_FILE,
    GalleryIndex,
    GalleryIndexError,
    ann_files,
    check_finite_rows,
    connect,
    shard_files,
)

if TYPE_CHECKING:
    from ..ray_indexing import RayEmbedder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MARKER_FILE = ".onenet-index"  # marks a folder as an index; locked (flock) while a build writes
MAX_N_TREES = 1000  # Annoy trees (`--ann annoy`)
MAX_SMALL_SHARDS = 8  # shards searched exactly; more are merged into one, so a query scans few files
MAX_DEAD_SHARE = 0.25  # a shard whose rows are this much deleted or changed is rewritten with its live rows
SQLITE_FILES = {INDEX_DB, f"{INDEX_DB}-wal", f"{INDEX_DB}-shm", f"{INDEX_DB}-journal"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards(
    seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, size INTEGER NOT NULL, ann TEXT);
CREATE TABLE IF NOT EXISTS images(
    path TEXT PRIMARY KEY, hash TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    shard INTEGER NOT NULL, position INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS images_by_place ON images(shard, position);
CREATE TABLE IF NOT EXISTS skipped(path TEXT PRIMARY KEY, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS builds(
    id TEXT PRIMARY KEY, finished REAL NOT NULL, embedded INTEGER, reused INTEGER, dropped INTEGER, shards INTEGER);
"""


def check_image_folder(folder: str | Path) -> Path:
    """A folder of images to list must exist (the CLI checks it before the model loads)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GalleryIndexError(f"image folder not found: {folder}")
    return folder


def list_images(folder: str | Path) -> list[Path]:
    """Image files (by suffix) under `folder`, recursively, in sorted order.

    Broken links and link loops with an image suffix are listed too, so that indexing reports them as
    skipped (with the reason) instead of leaving them out unsaid.
    """
    folder = check_image_folder(folder)
    return sorted(p for p in _files_below(folder) if p.is_file() or (p.is_symlink() and not p.exists()))


def _files_below(folder: Path) -> Iterator[Path]:
    """Every entry under `folder` with an image suffix, walking with a stack rather than recursion (a gallery
    1,100 folders deep overflowed `Path.rglob`'s); links to folders are not followed, as `rglob` does not."""
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # a folder that cannot be read holds nothing to index
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                yield Path(entry.path)


def check_index_folder(folder: str | Path, images: Sequence[str | Path] = ()) -> None:
    """Refuse, before any work, an index folder a build must not write into: an existing file, a folder that
    is or contains the images (`images`: the image folder, or the image paths), or a non-empty folder that is
    not an index. The index deletes files it wrote, so it keeps a folder of its own."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GalleryIndexError(f"{folder} is a file, not a folder: give a new folder for the index")
    check_output_folder(folder, "index folder")  # one that cannot be made or written in
    resolved = Path(os.path.realpath(folder))
    for image in images:
        image = Path(os.path.realpath(image))
        if image == resolved or resolved in image.parents:
            raise GalleryIndexError(
                f"the index folder {folder} is or contains the images to index ({image}); "
                "give the index a folder of its own"
            )
    for name, what in ((MARKER_FILE, "marker file"), *((name, "catalogue") for name in sorted(SQLITE_FILES))):
        own = folder / name
        if own.is_symlink() or (own.exists() and not own.is_file()):
            raise GalleryIndexError(  # not deleted: an index deletes only files its builds wrote
                f"{own} should be the index's {what} but is a folder, a link or another kind of file; "
                "remove it and run this again"
            )
    if folder.is_dir() and any(folder.iterdir()) and not _is_index_folder(folder):
        raise GalleryIndexError(
            f"{folder} is not empty and holds no gallery index; give a new or empty folder "
            "(an index keeps a folder of its own and deletes only files it wrote)"
        )


def _is_index_folder(folder: Path) -> bool:
    """Marked by a build, or (a format-2 index from before the marker) holding nothing but what builds wrote."""
    if (folder / MARKER_FILE).is_file():
        return True
    names = [entry.name for entry in folder.iterdir()]
    return LEGACY_INDEX_FILE in names and all(
        name == LEGACY_INDEX_FILE or LEGACY_BUILD_FILE.fullmatch(name) for name in names
    )


@contextlib.contextmanager
def build_lock(folder: str | Path, timeout: float | None) -> Iterator[None]:
    """Hold the index folder's lock (flock on its marker file) for a whole build. A second build is refused at
    once (`timeout` 0), or waits up to `timeout` seconds (None: no limit), then extends what the first wrote."""
    folder = Path(folder)
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
                        f"another build of the index at {folder} is running"
                        + (f" (waited {timeout:g} s)" if timeout else "")
                        + "; run this again when it has finished"
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


def check_ann_options(ann: str, n_trees: int) -> None:
    """The ANN method and Annoy's tree count, checked before any work (the CLI calls it before the model loads)."""
    if ann not in ANN_METHODS:
        raise OneNetError(f"unknown ANN method {ann!r}; use one of {', '.join(ANN_METHODS)}")
    if not isinstance(n_trees, int) or not 1 <= n_trees <= MAX_N_TREES:
        raise OneNetError(f"n_trees (--n-trees) must be 1 to {MAX_N_TREES:,}, got {n_trees!r}")


def build_index(
    model,
    processor,
    images: str | Path | Sequence[str | Path],
    folder: str | Path,
    batch_size: int = 32,
    ann: str = "ivfpq",
    n_trees: int = ANNOY_TREES,
    rebuild: bool = False,
    lock_timeout: float | None = 0,
    embedder: Embedder | RayEmbedder | None = None,
) -> GalleryIndex:
    """Index every image of a folder (or a list of paths) into `folder` with `model`: `build_gallery` with the
    model's fingerprint and representation size. `embedder`: what embeds the new images (default: this process,
    `local_embedder`; `onnx_embedder`: an exported gallery encoder; `RayEmbedder`: Ray Data)."""
    embedder = embedder or local_embedder(model, processor)
    options = {"batch_size": batch_size, "ann": ann, "n_trees": n_trees, "rebuild": rebuild}
    return build_gallery(
        images, folder, model_fingerprint(model), model.config.hidden_size, embedder, lock_timeout, **options
    )


def build_gallery(
    images: str | Path | Sequence[str | Path],
    folder: str | Path,
    fingerprint: str,
    representation_size: int,
    embedder: Embedder | RayEmbedder,
    lock_timeout: float | None = 0,
    batch_size: int = 32,
    ann: str = "ivfpq",
    n_trees: int = ANNOY_TREES,
    rebuild: bool = False,
) -> GalleryIndex:
    """Index every image of a folder (or a list of paths) into `folder`, rows made by `embedder` for the model
    of `fingerprint`; afterwards the index holds exactly the readable ones. Needs no PyTorch itself, so
    `onenet index` on an exported gallery encoder (`onnx.graphs.OnnxGalleryEncoder`) never imports it.

    Unchanged files (same size and modification time) are not read; a new or changed file whose content the
    index holds (a move, a copy) is not embedded again; files gone or unreadable are dropped, the unreadable
    ones listed in `metadata["skipped"]` with the reason. An index there from another model, a corrupt one, or
    `rebuild` starts afresh; a format-2 index is upgraded (its vectors reused). `folder` must be new, empty or an
    index (`check_index_folder`). A build running on it meanwhile refuses this one, or is waited for up to
    `lock_timeout` seconds (None: no limit).
    """
    folder = link_target(folder)  # an --out that is a link: the index is written where it leads
    check_ann_options(ann, n_trees)
    if isinstance(images, (str, Path)):
        paths, sources = list_images(images), [Path(images)]
    else:
        paths = sources = [Path(p) for p in images]
    check_index_folder(folder, sources)
    with build_lock(folder, lock_timeout):
        files, skipped = _stat_files(paths)
        return write_gallery(
            folder, fingerprint, representation_size, files, skipped, embedder,
            file_hash, batch_size, ann, n_trees, rebuild,
        )  # fmt: skip


def _stat_files(paths: Sequence[Path]) -> tuple[list[GalleryFile], list[dict]]:
    """Each listed path's GalleryFile, and a skipped entry (path, reason) for those that cannot be read or whose
    path is not valid UTF-8 (the catalogue stores paths as text; one such name used to stop the whole build)."""
    files, skipped = [], []
    for path in paths:
        key, listed = os.path.realpath(path), os.path.abspath(path)  # realpath: no error on a link loop (below)
        if printable_path(key) != key or printable_path(listed) != listed:
            shown = printable_path(listed)
            skipped.append({"path": shown, "reason": f"{shown}: the name is not valid UTF-8; rename it to index it"})
            continue
        try:
            stat = os.stat(path)
        except OSError as error:  # a broken link, a link loop, no permission
            skipped.append({"path": listed, "reason": f"{path}: {error.strerror or error}"})
            continue
        files.append(GalleryFile(key, listed, stat.st_size, stat.st_mtime_ns))
    return files, skipped


def write_gallery(
    folder: str | Path,
    fingerprint: str,
    representation_size: int,
    files: Sequence[GalleryFile],
    skipped: list[dict],
    embedder: Embedder | RayEmbedder,
    content_hash: Callable[[str], str] = file_hash,
    batch_size: int = 32,
    ann: str = "ivfpq",
    n_trees: int = ANNOY_TREES,
    rebuild: bool = False,
) -> GalleryIndex:
    """Bring the index at `folder` to exactly `files` (the caller holds the lock): one new shard for the rows
    it lacks, merges when shards pile up or empty out, one transaction, then the unlisted files go.

    `embedder` and `content_hash` are how rows are made; bench/speed/gallery_scale.py passes its own to inject vectors
    into this same code path. Files are written before the transaction that lists them, so a killed build
    leaves only unlisted files, which the next build deletes.
    """
    folder = Path(folder)
    connection, problem = _open_for_build(folder, fingerprint, rebuild)
    committed = False
    try:
        with connection:
            connection.execute("BEGIN IMMEDIATE")  # readers go on reading the last committed index
            if problem or rebuild:  # start afresh, in this transaction: a failed build leaves the old catalogue
                if problem:
                    tqdm.write(f"re-embedding every image: {problem}", file=sys.stderr)
                for table in ("info", "shards", "images", "skipped"):
                    connection.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed table names)
            build = _Build(folder, connection, ann, n_trees)
            reuse = {} if rebuild else _reusable_rows(folder, connection, fingerprint)
            build.place(files, skipped, reuse, embedder, content_hash, batch_size)
            if not connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]:  # rolled back: the old index stays
                reasons = "; ".join(f"{escape_controls(s['path'])}: {s['reason']}" for s in skipped[:3])
                more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
                raise GalleryIndexError(
                    f"no readable images among {len(files) + len(skipped)} files; skipped {reasons}{more}"
                )
            build.compact()
            build.commit(fingerprint, representation_size, skipped)
        committed = True
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
        with contextlib.suppress(sqlite3.Error):
            _delete_unlisted(folder, upgraded=committed)  # also a failed build's new files
    return GalleryIndex.load(folder)


def _open_for_build(folder: Path, fingerprint: str, rebuild: bool) -> tuple[sqlite3.Connection, str | None]:
    """The index's SQLite file, and why its catalogue must start afresh (another model's, or damaged: the catalogue
    and the arrays' headers are checked; no stored value is read, the rows a build copies are checked as they are
    copied), if it must; a file that is not a database is replaced (nothing of it could be read anyway). A rebuild
    reads nothing of the old index, so any damage is repaired."""
    problem = None
    if (folder / INDEX_DB).is_file() and not rebuild:
        try:
            if GalleryIndex.load(folder).metadata["model"] != fingerprint:
                problem = f"the index at {folder} was made by another model"
        except GalleryIndexError as error:
            problem = str(error)
    try:
        connection = connect(folder, read_only=False)
        connection.executescript(SCHEMA)
    except sqlite3.DatabaseError:  # not a database at all
        for name in SQLITE_FILES:
            (folder / name).unlink(missing_ok=True)
        connection = connect(folder, read_only=False)
        connection.executescript(SCHEMA)
    return connection, problem


@dataclass
class _Place:
    """Where a row's vectors lie: a listed shard of this index (`shard` seq) or a format-2 array (`legacy`)."""

    shard: int | None
    position: int
    legacy: dict[str, np.ndarray] | None = None


def _reusable_rows(folder: Path, connection: sqlite3.Connection, fingerprint: str) -> dict[str, _Place]:
    """Rows already embedded, by content hash: this index's, and a format-2 index's of this model (an upgrade)."""
    reuse = {
        content: _Place(shard, position)
        for content, shard, position in connection.execute("SELECT hash, shard, position FROM images")
    }
    if (folder / LEGACY_INDEX_FILE).is_file():
        try:
            legacy = json.loads((folder / LEGACY_INDEX_FILE).read_text(encoding="utf-8"))
            if legacy["model"] != fingerprint:
                raise ValueError("another model made it")
            arrays = {name: np.load(folder / legacy["files"][name], mmap_mode="r") for name in ARRAYS}
            for position, content in enumerate(legacy["hashes"]):
                reuse.setdefault(content, _Place(None, position, arrays))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
            reason = f"its {LEGACY_INDEX_FILE} has no {error} entry" if isinstance(error, KeyError) else error
            tqdm.write(f"not reusing the format-2 index at {folder}: {reason}", file=sys.stderr)
    return reuse


class _Build:
    """One build's changes to the catalogue, made inside the caller's transaction."""

    def __init__(self, folder: Path, connection: sqlite3.Connection, ann: str, n_trees: int):
        self.folder, self.connection, self.ann, self.n_trees = folder, connection, ann, n_trees
        self.ann_arrays = _listed_ann_arrays(connection)  # what the large shards listed now have ANN files of
        self.written: set[int] = set()  # seqs of the shards this build wrote (with every ANN file)
        self.counts = {"embedded": 0, "reused": 0, "dropped": 0}
        self.opened: dict[int, dict[str, np.ndarray]] = {}
        self.names: dict[int, str] = {}  # the opened shards' names
        self.shard: dict[str, np.ndarray] | None = None  # the shard being written, its files opened on first row

    def _arrays(self, seq: int) -> dict[str, np.ndarray]:
        """A listed shard's arrays, memory-mapped."""
        if seq not in self.opened:
            (name,) = self.connection.execute("SELECT name FROM shards WHERE seq = ?", (seq,)).fetchone()
            self.names[seq] = name
            self.opened[seq] = {
                array: np.load(self.folder / file, mmap_mode="r") for array, file in shard_files(name).items()
            }
        return self.opened[seq]

    def _vectors(self, place: _Place) -> dict[str, np.ndarray]:
        arrays = place.legacy if place.legacy is not None else self._arrays(place.shard)
        return {name: arrays[name][place.position] for name in ARRAYS}

    def _checked_vectors(self, place: _Place) -> dict[str, np.ndarray]:
        """A listed shard's row, refused (the one-line corrupt-index error naming the file) if it holds NaN or
        infinity: the stored rows a build copies are checked here, the others on their first use."""
        vectors = self._vectors(place)
        for name, row in vectors.items():
            check_finite_rows(self.folder, row[None], shard_files(self.names[place.shard])[name])
        return vectors

    def _start_shard(self, size: int) -> None:
        self.name, self.size, self.shard = uuid.uuid4().hex[:12], size, None

    def _write(self, position: int, vectors: dict[str, np.ndarray]) -> None:
        """One row of the shard being written; its files (`size` rows) are created by the first row, in place."""
        if self.shard is None:
            self.shard = {
                name: np.lib.format.open_memmap(
                    self.folder / file, "w+", dtype=ARRAY_DTYPES[name], shape=(self.size, len(vectors[name]))
                )
                for name, file in shard_files(self.name).items()
            }
        for name in ARRAYS:
            self.shard[name][position] = vectors[name]

    def _build_ann_files(self, name: str, arrays: dict[str, np.ndarray], ann: str, which: Sequence[str]) -> None:
        """Build shard `name`'s ANN files of the arrays `which`, each on disk before a transaction lists it. Only
        the image representations' keeps an fp16 copy of the vectors (image queries are answered from the file
        alone); the text spaces' keep 6-bit components, and their few best candidates are re-scored from the
        shard's own rows, which keeps the build short and the files small."""
        for array, file in ann_files(name, ann, which).items():
            refine = "vectors" if array == "image_embeds" else "components"
            build_ann(ann, arrays[array], self.folder / file, self.n_trees, refine=refine)
            with open(self.folder / file, "rb") as written:
                os.fsync(written.fileno())

    def _finish_shard(self) -> int | None:
        """Flush the shard's files, build its ANN files when it is large, list it; its seq (None: nothing written)."""
        if self.shard is None:
            return None
        for array in self.shard.values():
            array.flush()  # msync: on disk before the transaction that lists them commits
        ann = self.ann if self.size > EXACT_SEARCH_MAX_IMAGES else None
        if ann:
            self._build_ann_files(self.name, self.shard, ann, tuple(SEARCH_ARRAYS))
        self.shard = None
        cursor = self.connection.execute(
            "INSERT INTO shards(name, size, ann) VALUES (?, ?, ?)", (self.name, self.size, ann)
        )
        self.written.add(cursor.lastrowid)
        return cursor.lastrowid

    def place(self, files, skipped: list[dict], reuse: dict, embedder, content_hash, batch_size: int) -> None:
        """Keep unchanged rows; copy reusable content into a new shard and embed the rest into it; drop the rest."""
        current = {
            path: (size, mtime_ns)
            for path, size, mtime_ns in self.connection.execute("SELECT path, size, mtime_ns FROM images")
        }
        listed, copies, pending = set(), [], []
        for item in tqdm(files, desc="checking files", unit="file", mininterval=1):
            if item.key in listed:
                continue  # the same file listed twice (a link and its target)
            if current.get(item.key) == (item.size, item.mtime_ns):
                listed.add(item.key)
                continue
            try:
                content = content_hash(item.key)
            except OSError as error:
                skipped.append({"path": item.listed, "reason": f"{item.listed}: {error.strerror or error}"})
                continue
            listed.add(item.key)
            (copies if content in reuse else pending).append((item, content))
        changed = {item.key for item, _ in copies + pending}
        self.counts["dropped"] = sum(path not in listed for path in current)
        self.connection.executemany(
            "DELETE FROM images WHERE path = ?", [(path,) for path in current if path not in listed or path in changed]
        )
        self._start_shard(len(copies) + len(pending))
        new_rows, to_embed = [], [(item, content, len(copies) + k) for k, (item, content) in enumerate(pending)]
        for position, (item, content) in enumerate(copies):
            vectors = self._vectors(reuse[content])
            if all(np.isfinite(row).all() for row in vectors.values()):
                self._write(position, vectors)
                new_rows.append((item, content, position))
                self.counts["reused"] += 1
            else:  # a stored row holding NaN or infinity is embedded again, into the slot it would have had
                to_embed.append((item, content, position))
        progress = tqdm(total=len(to_embed), desc="embedding images", unit="img", mininterval=1)
        with progress:
            for indices, arrays, failed in embedder.run([item for item, _, _ in to_embed], batch_size):
                skipped += [{"path": item.listed, "reason": reason} for item, reason in failed]
                for row, index in enumerate(indices):
                    item, content, position = to_embed[index]  # a file that failed leaves its slot unlisted
                    self._write(position, {name: arrays[name][row] for name in ARRAYS})
                    new_rows.append((item, content, position))
                self.counts["embedded"] += len(indices)
                progress.update(len(indices) + len(failed))
        new_rows.sort(key=lambda row: row[2])  # an engine may return batches out of order
        seq = self._finish_shard()
        self.connection.executemany(
            "INSERT INTO images(path, hash, size, mtime_ns, shard, position) VALUES (?, ?, ?, ?, ?, ?)",
            [(item.key, content, item.size, item.mtime_ns, seq, position) for item, content, position in new_rows],
        )

    def compact(self) -> None:
        """Merge the small (exactly searched) shards when there are too many or they grow large, rewrite a
        shard that is mostly dead rows, give large shards the asked-for ANN method and the ANN files an older
        build did not make (from their stored rows: nothing is embedded again), and unlist empty shards."""
        shards = self.connection.execute(
            "SELECT s.seq, s.name, s.size, s.ann, COUNT(i.path) FROM shards s LEFT JOIN images i ON i.shard = s.seq "
            "GROUP BY s.seq ORDER BY s.seq"
        ).fetchall()
        empty = [(seq,) for seq, *_, live in shards if not live]
        self.connection.executemany("DELETE FROM shards WHERE seq = ?", empty)
        shards = [shard for shard in shards if shard[4]]
        small = [shard for shard in shards if shard[3] is None]
        if len(small) > MAX_SMALL_SHARDS or sum(live for *_, live in small) > EXACT_SEARCH_MAX_IMAGES:
            self._merge([seq for seq, *_ in small])
        for seq, name, size, ann, live in shards:
            if ann is not None and live < (1 - MAX_DEAD_SHARE) * size:
                self._merge([seq])
            elif (
                ann is not None
                and seq not in self.written
                and (ann != self.ann or self.ann_arrays != tuple(SEARCH_ARRAYS))
            ):
                missing = SEARCH_ARRAYS if ann != self.ann else [a for a in SEARCH_ARRAYS if a not in self.ann_arrays]
                tqdm.write(f"building the ANN files of shard {name}: {', '.join(missing)}", file=sys.stderr)
                arrays = self._arrays(seq)
                for array in missing:  # every row is read anyway
                    check_finite_rows(self.folder, arrays[array], shard_files(name)[array])
                self._build_ann_files(name, arrays, self.ann, tuple(missing))
                self.connection.execute("UPDATE shards SET ann = ? WHERE seq = ?", (self.ann, seq))

    def _merge(self, seqs: list[int]) -> None:
        """Rewrite the live rows of shards `seqs` into one new shard, moving their catalogue rows to it."""
        marks = ",".join("?" * len(seqs))
        rows = self.connection.execute(
            f"SELECT path, shard, position FROM images WHERE shard IN ({marks}) ORDER BY shard, position", seqs
        ).fetchall()  # noqa: S608 (placeholders only)
        self._start_shard(len(rows))
        for position, (_, seq, old) in enumerate(tqdm(rows, desc="merging shards", unit="row", mininterval=1)):
            self._write(position, self._checked_vectors(_Place(seq, old)))
        new = self._finish_shard()
        self.connection.executemany(
            "UPDATE images SET shard = ?, position = ? WHERE path = ?",
            [(new, position, path) for position, (path, _, _) in enumerate(rows)],
        )
        self.connection.execute(f"DELETE FROM shards WHERE seq IN ({marks})", seqs)  # noqa: S608

    def commit(self, fingerprint: str, representation_size: int, skipped: list[dict]) -> None:
        """The catalogue's info, skipped list and build record (the caller's transaction commits it)."""
        build = uuid.uuid4().hex[:12]
        info = {"format": INDEX_FORMAT, "model": fingerprint, "representation_size": representation_size,
                "build": build, "ann": self.ann, "ann_arrays": ",".join(SEARCH_ARRAYS)}  # fmt: skip
        self.connection.executemany("INSERT OR REPLACE INTO info VALUES (?, ?)", [(k, str(v)) for k, v in info.items()])
        self.connection.execute("DELETE FROM skipped")
        self.connection.executemany(
            "INSERT OR REPLACE INTO skipped VALUES (?, ?)",
            sorted((s["path"], s["reason"]) for s in skipped),  # in path order, whatever order the engine ran in
        )
        (shards,) = self.connection.execute("SELECT COUNT(*) FROM shards").fetchone()
        self.connection.execute(
            "INSERT INTO builds VALUES (?, ?, ?, ?, ?, ?)",
            (build, time.time(), self.counts["embedded"], self.counts["reused"], self.counts["dropped"], shards),
        )


def relocate_paths(folder: str | Path, root: str | Path) -> int:
    """Store the paths of the index's images (and skipped files) that lie under `root` relative to it, and return
    how many changed: an index published beside its photos (a Space bundle) then names no folder of the machine
    that built it. The next build where the photos are gives them their real paths again, reusing every row."""
    folder = Path(folder)
    prefixes = {os.path.realpath(root) + os.sep, os.path.abspath(root) + os.sep}
    with build_lock(folder, timeout=None):
        connection = connect(folder, read_only=False)
        try:
            with connection:
                changed = 0
                for table in ("images", "skipped"):
                    for prefix in prefixes:
                        changed += connection.execute(
                            f"UPDATE {table} SET path = substr(path, ?) WHERE substr(path, 1, ?) = ?",  # noqa: S608
                            (len(prefix) + 1, len(prefix), prefix),
                        ).rowcount
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
    return changed


def _listed_ann_arrays(connection: sqlite3.Connection) -> tuple[str, ...]:
    """The arrays the catalogue's large shards have ANN files of (an index built before text queries had
    theirs lists only the image representations')."""
    row = connection.execute("SELECT value FROM info WHERE key = 'ann_arrays'").fetchone()
    return tuple(row[0].split(",")) if row else LEGACY_ANN_ARRAYS


def _delete_unlisted(folder: Path, upgraded: bool) -> None:
    """Delete shard files the catalogue does not list (replaced shards, a failed or killed build's) and, once a
    build has committed (`upgraded`), the format-2 files; nothing else. The caller holds the lock."""
    connection = connect(folder, read_only=True)
    try:
        listed = {name for (name,) in connection.execute("SELECT name FROM shards")}
        arrays = _listed_ann_arrays(connection)
        shards = connection.execute("SELECT name, ann FROM shards").fetchall()
        anns = {file for name, ann in shards for file in ann_files(name, ann, arrays).values()}
    finally:
        connection.close()
    for entry in folder.iterdir():
        match = SHARD_FILE.fullmatch(entry.name)
        unused_ann = entry.suffix.lstrip(".") in ANN_METHODS and entry.name not in anns
        stale = match and (match["shard"] not in listed or unused_ann)
        legacy = upgraded and (entry.name == LEGACY_INDEX_FILE or LEGACY_BUILD_FILE.fullmatch(entry.name))
        if (stale or legacy) and entry.is_file() and not entry.is_symlink():
            entry.unlink()


__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_N_TREES",
    "build_gallery",
    "build_index",
    "build_lock",
    "check_ann_options",
    "check_image_folder",
    "check_index_folder",
    "list_images",
    "relocate_paths",
    "write_gallery",
]
