"""Files and folders written whole: built beside their destination under a temporary name, renamed into place at
the end, so a reader or a killed run never sees half of one."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: a killed run's temporary folder cannot be told from a running one's, so none is removed
    fcntl = None

from ..errors import OneNetError


def link_target(path: str | os.PathLike) -> Path:
    """`path`, or where the link at `path` leads (to the end, existing or not): outputs are written through links,
    as a shell's `>` does, and the link stays."""
    path = Path(path)
    return _resolved(path) if path.is_symlink() else path


def _resolved(path: Path) -> Path:
    """`path` made absolute with its links followed; a loop of links is one OneNetError naming it."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a loop, 3.13 OSError
        raise OneNetError(f"{path} is a loop of links, which leads to no file or folder") from None


def check_new_folder(out: Path, what: str) -> Path:
    """The folder to write for `out` (`check_output_folder`: through a link), refused if it exists and is not an
    empty folder (a release or a Space never mixes with other files) or cannot be written."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OneNetError(f"{out} already exists; {what} is written whole into a new folder")
    return check_output_folder(out, "output folder")


def check_output_file(path: str | os.PathLike, what: str = "--out") -> Path:
    """The file to write for an output `path`, checked before any work: a new or regular file (a link is written
    through to its target, which is returned) in a folder this process can write in. A folder, a device or a FIFO
    is refused, as is a folder that is missing or read-only: one line naming `what` and `path`, never a traceback
    after the work."""
    target = _resolved(Path(path))  # a link's target, a relative path made absolute
    if target.exists() and not stat.S_ISREG(target.stat().st_mode):
        kind = "a folder" if target.is_dir() else "not a regular file"
        raise OneNetError(f"{what} {path} is {kind}; give the name of a file to write")
    _check_writable(target.parent, what, path)
    return target


def check_output_folder(folder: str | os.PathLike, what: str = "--out") -> Path:
    """The folder to write files into for `folder` (a link's target: `link_target`), existing or not (the caller
    creates it), checked before any work: an existing non-folder is refused, as is a place where this process
    cannot create it or write in it."""
    folder = link_target(folder)
    if folder.exists() and not folder.is_dir():
        raise OneNetError(f"{what} {folder} is a file, not a folder: give a folder to write into")
    existing = _resolved(folder)
    while not existing.exists():  # the nearest folder that exists, where the missing ones are made
        existing = existing.parent
    if not existing.is_dir():
        raise OneNetError(f"{what} {folder}: {existing} is a file, not a folder")
    _check_writable(existing, what, folder)
    return folder


def _check_writable(folder: Path, what: str, path: str | os.PathLike) -> None:
    """Raise unless a file can be created in `folder`, tried with a nameless temporary file: permission bits
    alone do not tell (root, read-only mounts, /proc)."""
    if not folder.is_dir():
        raise OneNetError(f"{what} {path}: its folder does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OneNetError(f"{what} {path}: cannot write in {folder} ({error.strerror or error})") from None


def _locked(path: Path, wait: bool) -> int | None:
    """A descriptor of `path` (a folder) holding its exclusive flock, which ends when it is closed or the process
    dies; None when another process holds it and `wait` is False."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


@contextmanager
def temporary_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new hidden folder `parent/<prefix>xxxxxxxx`, locked while in use and removed after (unless renamed away).

    Leftovers of killed runs (same prefix, nobody's lock) are removed first, while `parent` is locked, so that a
    folder another run has just made is never taken for one: a killed release or export leaves nothing for long.
    """
    parent.mkdir(parents=True, exist_ok=True)
    lock = None
    if fcntl is None:
        building = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    else:
        parent_lock = _locked(parent, wait=True)
        try:
            leftover = re.compile(re.escape(prefix) + r"[a-z0-9_]{8}")  # the names mkdtemp gives
            for entry in parent.iterdir():
                if leftover.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
                    with suppress(OSError):
                        held = _locked(entry, wait=False)
                        if held is not None:  # no live run holds it
                            shutil.rmtree(entry, ignore_errors=True)
                            os.close(held)
            building = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
            lock = _locked(building, wait=False)
        finally:
            os.close(parent_lock)
    try:
        yield building
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone already when the caller renamed it into place
        if lock is not None:
            os.close(lock)


@contextmanager
def new_folder(out: Path, what: str) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to fill (`temporary_folder`); on success it becomes `out`, on any
    failure it is removed, and a killed run's is removed by the next run beside it."""
    out = check_new_folder(out, what)
    with temporary_folder(out.parent, f".{out.name}.") as building:
        yield building
        building.chmod(0o755)
        if out.is_dir():
            out.rmdir()  # empty, checked above
        os.replace(building, out)


def _json_number(value: object) -> object:
    """numpy scalars as Python numbers, which `json` can write; anything else stays an error."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_text(text: str, path: Path) -> None:
    """`text` at `path` (its folder made), through a temporary sibling and a rename: a file is replaced whole or
    not at all; a link is written through to its target, as `check_output_file` promises."""
    path = link_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(obj: object, path: Path) -> None:
    """`obj` as indented JSON at `path`, atomically (`write_text`): results and logs that took hours are replaced
    whole or not at all."""
    write_text(json.dumps(obj, indent=2, default=_json_number) + "\n", path)


__all__ = [
    "check_new_folder",
    "check_output_file",
    "check_output_folder",
    "link_target",
    "new_folder",
    "temporary_folder",
    "write_json",
    "write_text",
]
