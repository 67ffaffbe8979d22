"""Files and folders written whole: built beside their destination under a temporary name, renamed into place at
the end, so a reader or a killed run never sees half of one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import OneNetError


def check_new_folder(out: Path, what: str) -> None:
    """Refuse an `out` that exists and is not an empty folder: a release or a Space never mixes with other files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OneNetError(f"{out} already exists; {what} is written whole into a new folder")


@contextmanager
def new_folder(out: Path, what: str) -> Iterator[Path]:
    """Yield a temporary sibling of `out` to fill; on success it becomes `out`, on any failure it is removed."""
    check_new_folder(out, what)
    out.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield building
        building.chmod(0o755)
        if out.is_dir():
            out.rmdir()  # empty, checked above
        os.replace(building, out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


def _json_number(value: object) -> object:
    """numpy scalars as Python numbers, which `json` can write; anything else stays an error."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def write_json(obj: object, path: Path) -> None:
    """`obj` as indented JSON at `path` (its folder made), through a temporary sibling and a rename: results and
    logs that took hours are replaced whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_number) + "\n")
    os.replace(tmp, path)


__all__ = ["check_new_folder", "new_folder", "write_json"]
