"""A checkpoint's identity: what ONNX exports and gallery indexes record, so a mismatch is caught."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def checkpoint_fingerprint(folder: str | os.PathLike) -> str:
    """Hash of a checkpoint folder's config (canonical JSON) and weight file bytes."""
    folder = Path(folder)
    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    for file in (config_file, weights_file):
        if not file.is_file():
            raise FileNotFoundError(f"{folder} is not a OneNet checkpoint: {file.name} is missing")
    config = json.loads(config_file.read_text())
    config.pop("transformers_version", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    with weights_file.open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


__all__ = ["checkpoint_fingerprint"]
