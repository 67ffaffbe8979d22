"""An ONNX export as onnxruntime loads it, without PyTorch or transformers: the manifest, graphs checked against
it, session options, and the gallery encoder that lets `onenet index` start in about a second.

`onnx_backend` (captions and the image side on onnxruntime, beside PyTorch) opens exports through these same
functions; `onnx_export` writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import OneNetError
from ..options import RENAMED_VARIANTS, variant_name
from ..representations import ARRAY_DTYPES, ARRAYS
from ..utils.extras import require
from ..utils.messages import shorten

if TYPE_CHECKING:
    import onnxruntime

MANIFEST_FILE = "manifest.json"
# The checkpoint files an export records the hashes of: while they are unchanged, the fingerprint the export
# recorded is the checkpoint's, and checking it needs neither torch nor the weights read as tensors.
CHECKPOINT_FILES = ("config.json", "model.safetensors")


class OnnxExportError(OneNetError):
    """The ONNX folder is missing, incomplete, or was exported from another checkpoint."""


def read_manifest(manifest_file: Path, command: str) -> dict:
    """The export's manifest, its shape checked (`_is_manifest`), or one line naming the problem and `command`,
    which exports again."""
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise OnnxExportError(f"{manifest_file} is not readable JSON ({error}); export again: {command}") from None
    if not _is_manifest(manifest):
        raise OnnxExportError(
            f"{manifest_file} is not a manifest of onenet export (no valid 'graphs'); export again: {command}"
        )
    for graph in manifest["graphs"].values():  # an export made before a variant was renamed: its files, new names
        for old, new in RENAMED_VARIANTS.items():
            if old in graph["files"]:
                graph["files"].setdefault(new, graph["files"].pop(old))
    return manifest


def _is_manifest(manifest: object) -> bool:
    """Graphs, each with its outputs and, per variant, a plain file name (inside the export folder) and a SHA-256."""
    graphs = manifest.get("graphs") if isinstance(manifest, dict) else None
    if not isinstance(graphs, dict) or not graphs:
        return False
    for graph in graphs.values():
        if not isinstance(graph, dict) or not isinstance(graph.get("outputs"), list):
            return False
        if not isinstance(graph.get("files"), dict):
            return False
        for entry in graph["files"].values():
            path, digest = (entry.get("path"), entry.get("sha256")) if isinstance(entry, dict) else (None, None)
            if (
                not isinstance(path, str)
                or Path(path).name != path
                or path in ("", "..")
                or not isinstance(digest, str)
            ):
                return False
    return True


def sha256_file(path: Path) -> str:
    """A file's SHA-256 as hex, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_file_hashes(checkpoint: Path) -> dict[str, str]:
    """The SHA-256 of each of CHECKPOINT_FILES, as an export records them."""
    return {name: sha256_file(checkpoint / name) for name in CHECKPOINT_FILES}


def open_export(checkpoint: Path, onnx_dir: str | os.PathLike | None) -> tuple[Path, dict]:
    """The export folder of `checkpoint` (default CHECKPOINT/onnx) and its manifest, checked to be this
    checkpoint's: by the recorded file hashes when they match (about 50 ms, torch-free), else by computing the
    checkpoint's fingerprint (`fingerprint.checkpoint_fingerprint`, which loads the weights with torch)."""
    folder = Path(onnx_dir) if onnx_dir else checkpoint / "onnx"
    command = f"onenet export {checkpoint} --out {folder}"
    if not (folder / MANIFEST_FILE).is_file():
        raise OnnxExportError(f"no ONNX export at {folder} ({MANIFEST_FILE} missing); run: {command}")
    manifest = read_manifest(folder / MANIFEST_FILE, command)
    recorded = manifest.get("checkpoint_fingerprint")
    try:
        same_files = manifest.get("checkpoint_files") == checkpoint_file_hashes(checkpoint)
    except OSError:
        same_files = False  # a file missing: checkpoint_fingerprint names it
    if not same_files:
        from ..fingerprint import checkpoint_fingerprint

        expected = checkpoint_fingerprint(checkpoint)
        if recorded != expected:
            raise OnnxExportError(
                f"the ONNX export at {folder} was made from another checkpoint "
                f"(fingerprint {recorded}, {checkpoint} has {expected}); export it again"
            )
    return folder, manifest


def checked_graph(path: Path, sha256: str) -> bytes:
    """A graph file's bytes, checked against the manifest's hash: read once, so the check costs one pass of
    SHA-256 (about 50 ms for the fp32 and dynamic int8 graphs) and what runs is exactly what was checked."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise OnnxExportError(f"{path} cannot be read ({error.strerror or error}); export again") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise OnnxExportError(
            f"{path} differs from the export's manifest (an export was interrupted or the file changed); export again"
        )
    return data


def graph_session(path: Path, graph_bytes: bytes, options: onnxruntime.SessionOptions, providers: list[str]):
    """An onnxruntime session of a graph `checked_graph` read; bytes onnxruntime cannot load (a graph replaced
    together with its manifest hash) are one error naming the file, so `onenet index` falls back to PyTorch."""
    onnxruntime = require("onnxruntime", "onnx", "the ONNX backend")
    try:
        return onnxruntime.InferenceSession(graph_bytes, options, providers=providers)
    except Exception as error:  # noqa: BLE001 - onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base
        raise OnnxExportError(
            f"{path} is not a graph onnxruntime can load ({type(error).__name__}: {shorten(str(error), 80)}); "
            "export again"
        ) from None


def session_options(threads: int = 0) -> onnxruntime.SessionOptions:
    """onnxruntime session options for OneNet's graphs: quiet, not spinning, `threads` intra-op threads (0:
    onnxruntime's default, the physical cores, as PyTorch's default is)."""
    onnxruntime = require("onnxruntime", "onnx", "the ONNX backend")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # idle onnxruntime threads would spin between runs, taking the cores PyTorch's ops (which run between
    # the decoder's steps) and other requests need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    return options


def environment_threads() -> int:
    """OMP_NUM_THREADS when set to a whole number (Ray sets it to an actor's CPUs; PyTorch reads it too), else 0."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdecimal() else 0


def gallery_variant(variant: str) -> str:
    """The variant a gallery is embedded in when `variant` is asked for: `fastest` in place of dynamic int8 (its
    scales follow the batch, so a photo's row would depend on its neighbours) and of fp16 (a GPU format)."""
    variant = variant_name(variant)
    return "fastest" if variant in ("int8-dynamic", "fp16") else variant


class OnnxGalleryEncoder:
    """Every gallery array of an image from one run of the exported image encoder (`gallery.ARRAYS`), on CPU,
    torch-free: in `variant` (`fastest`: the static int8 encoder where exported, else fp32). A gallery index
    built with it is the one `OneNet.build_index` builds on the same export."""

    def __init__(
        self, checkpoint: str | os.PathLike, onnx_dir: str | os.PathLike | None = None, variant: str = "fastest"
    ):
        require("onnxruntime", "onnx", "the ONNX backend")  # the missing extra named before any other work
        checkpoint = Path(checkpoint)
        folder, manifest = open_export(checkpoint, onnx_dir)
        graph = manifest["graphs"].get("image_encoder")
        if graph is None or any(name not in graph["outputs"] for name in ARRAYS):
            raise OnnxExportError(
                f"the image encoder exported at {folder} gives no {' or '.join(ARRAYS[2:])} (an older export); "
                f"export again for a gallery build without PyTorch: onenet export {checkpoint} --out {folder}"
            )
        variant = variant_name(variant)
        if variant == "fastest":
            variant = "int8-static" if "int8-static" in graph["files"] else "fp32"
        if variant not in graph["files"]:
            raise OnnxExportError(f"{folder} has no {variant} variant of image_encoder; export with that variant")
        entry = graph["files"][variant]
        options = session_options(environment_threads())
        graph_bytes = checked_graph(folder / entry["path"], entry["sha256"])
        self.session = graph_session(folder / entry["path"], graph_bytes, options, ["CPUExecutionProvider"])
        self.outputs, self.file = graph["outputs"], entry["path"]
        self.fingerprint = manifest["checkpoint_fingerprint"]
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        self.representation_size = int(config["hidden_size"])

    def embed(self, pixel_values: np.ndarray) -> dict[str, np.ndarray]:
        """(N, 3, H, W) float32 pixels (`images.pixel_values`) -> each gallery array, in the dtype builds store."""
        results = dict(zip(self.outputs, self.session.run(None, {"pixel_values": pixel_values}), strict=True))
        return {name: results[name].astype(ARRAY_DTYPES[name], copy=False) for name in ARRAYS}


__all__ = [
    "CHECKPOINT_FILES",
    "MANIFEST_FILE",
    "OnnxExportError",
    "OnnxGalleryEncoder",
    "checked_graph",
    "gallery_variant",
    "open_export",
    "read_manifest",
    "session_options",
]
