"""A Hugging Face Hub cache laid out as huggingface_hub lays it out, written from local folders (tests run offline).

HUB_CACHE/models--ORG--NAME/blobs/<hash>            file contents
HUB_CACHE/models--ORG--NAME/refs/<branch or tag>    the commit a name points to
HUB_CACHE/models--ORG--NAME/snapshots/<commit>/...  relative symlinks into blobs/
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def add_snapshot(hub_cache: Path, repo_id: str, folder: Path, refs: tuple[str, ...] = ("main",)) -> str:
    """Store every file under `folder` as one commit of `repo_id`; point `refs` at it; return the commit hash."""
    repo = hub_cache / ("models--" + repo_id.replace("/", "--"))
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    listing = hashlib.sha1()
    for file in files:
        listing.update(file.relative_to(folder).as_posix().encode() + hashlib.sha256(file.read_bytes()).digest())
    commit = listing.hexdigest()
    for file in files:
        blob = repo / "blobs" / hashlib.sha256(file.read_bytes()).hexdigest()
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, blob)
        link = repo / "snapshots" / commit / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return commit
