"""Folders written whole: built beside their destination under a hidden name, renamed into place at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


__all__ = ["check_new_folder", "new_folder"]
