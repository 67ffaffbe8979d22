"""Embedding a gallery with Ray Data batch inference: `onenet index DIR --out IDX --engine ray`.

Ray does the distributed part: the files to embed become a Ray Dataset, actors that each load the model once
decode and embed them (`OneNet.gallery_embedder`, the code a local build runs), and Ray schedules, moves the
data and recovers from a lost worker (Ray Data's defaults: a dead actor is restarted and its tasks retried;
an exception in our code is not retried, it is a bug or, for an unreadable file, a skipped row). This process
does what a local build does with the rows: writes them into the index's new shard and registers them in its
catalogue (`gallery.build.write_gallery`). The workers must reach the image paths and the model (a Hub id, or a
folder on a filesystem they share).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import OneNetError
from .gallery.embedding import GalleryFile
from .options import MAX_RAY_WORKERS as MAX_WORKERS
from .representations import ARRAYS
from .utils.extras import require


class _EmbeddingActor:
    """One Ray actor: loads the model once, then embeds batches of files (columns `index`, `key`, `listed`)."""

    def __init__(self, model: str, revision: str | None, backend: str, onnx_dir: str | None, onnx_variant: str):
        from .onenet import OneNet

        device = "cuda" if torch.cuda.is_available() else "cpu"  # Ray gives the actor a GPU when it asked for one
        net = OneNet.from_pretrained(
            model, device=device, backend=backend, onnx_dir=onnx_dir, onnx_variant=onnx_variant, revision=revision
        )
        self.embedder = net.gallery_embedder()
        side = net.model.config.image_size
        with torch.inference_mode():  # row shapes, so a batch whose files all fail still has every column
            probe = net.model.get_gallery_embeds(torch.zeros(1, 3, side, side, device=net.model.device))
        self.rows = {name: probe[name].shape[1:] for name in ARRAYS}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch's rows (zeros for a file that failed), with `index` and the `failure` reason ("" if none)."""
        pairs = zip(batch["key"], batch["listed"], strict=True)
        files = [GalleryFile(os.fsdecode(key), os.fsdecode(listed), 0, 0) for key, listed in pairs]
        arrays, failed = self.embedder.embed(self.embedder.prepare(files))
        reasons = {item.key: reason for item, reason in failed}
        good = np.array([item.key not in reasons for item in files])
        columns = {"index": batch["index"], "failure": np.array([reasons.get(item.key, "") for item in files])}
        for name in ARRAYS:
            dtype = np.float16 if name == "pooled_features" else np.float32
            column = np.zeros((len(files), *self.rows[name]), dtype=dtype)
            if good.any():
                column[good] = arrays[name]
            columns[name] = column
        return columns


class RayEmbedder:
    """Makes a build's rows on a Ray cluster (`address`; None: a local Ray on this machine's cores) with
    `num_workers` actors, each loading `model` as `OneNet.from_pretrained` would (one GPU each where the cluster
    has GPUs). Pass it as `build_index(..., embedder=...)`: the same contract (`run`) as
    `gallery.embedding.Embedder`."""

    def __init__(
        self,
        model: str,
        num_workers: int = 2,
        address: str | None = None,
        revision: str | None = None,
        backend: str = "auto",
        onnx_dir: str | None = None,
        onnx_variant: str = "fastest",
    ):
        if not isinstance(num_workers, int) or not 1 <= num_workers <= MAX_WORKERS:
            raise OneNetError(f"--num-workers must be 1 to {MAX_WORKERS}, got {num_workers!r}")
        self.ray = require("ray", "distributed", "indexing with --engine ray")
        require("ray.data", "distributed", "indexing with --engine ray")
        self.num_workers, self.address = num_workers, address
        self.description = f"{num_workers} Ray Data actors ({address or 'a local Ray'}; each loads the model)"
        self.actor_arguments = {
            "model": str(Path(model).resolve()) if Path(model).is_dir() else str(model),  # workers' cwd differs
            "revision": revision, "backend": backend,
            "onnx_dir": str(Path(onnx_dir).resolve()) if onnx_dir else None, "onnx_variant": onnx_variant,
        }  # fmt: skip

    def run(
        self, files: Sequence[GalleryFile], batch_size: int
    ) -> Iterator[tuple[list[int], dict[str, np.ndarray], list[tuple[GalleryFile, str]]]]:
        """Batch by batch, in the order Ray finishes them: indices (into `files`) of the rows embedded, their
        arrays, and the failures (unreadable files, with the reason)."""
        if not files:
            return
        ray = self.ray
        started = not ray.is_initialized()
        if started:
            ray.init(address=self.address, logging_level=logging.WARNING)
        try:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
            # paths as bytes: a name that is not valid UTF-8 (os.fsencode's surrogates) still travels
            rows = [
                {"index": i, "key": os.fsencode(item.key), "listed": os.fsencode(item.listed)}
                for i, item in enumerate(files)
            ]
            blocks = min(len(rows), max(self.num_workers, math.ceil(len(rows) / batch_size)))  # every worker busy
            embedded = ray.data.from_items(rows, override_num_blocks=blocks).map_batches(
                _EmbeddingActor,
                fn_constructor_kwargs=self.actor_arguments,
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=self.num_workers),
                num_cpus=1,
                num_gpus=gpus,
            )
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                good = batch["failure"] == ""
                indices = [int(i) for i in batch["index"][good]]
                pairs = zip(batch["index"][~good], batch["failure"][~good], strict=True)
                failed = [(files[int(index)], str(reason)) for index, reason in pairs]
                yield indices, {name: batch[name][good] for name in ARRAYS}, failed
        finally:
            if started:
                ray.shutdown()


__all__ = ["MAX_WORKERS", "RayEmbedder"]
