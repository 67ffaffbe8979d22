"""Export OneNet to ONNX (`onenet export`): the image side, the decoder's initial state and one decoder step.

Needs the `onnx` extra; `onenet_hf.onnx.backend` holds what loading an export needs."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import OneNetError
from ..fingerprint import checkpoint_fingerprint
from ..hub import check_model_folder, loading_checkpoint
from ..image_processing_onenet import OneNetImageProcessor
from ..images import load_image
from ..modeling_onenet import OneNetModel
from ..options import EXPORT_CACHE_DIR, MAX_CALIBRATION_IMAGES, variant_name
from ..representations import ARRAYS
from ..utils.atomic_files import check_output_folder, temporary_folder, write_json
from ..utils.extras import require
from .backend import CAPTION_GRAPHS
from .graphs import MANIFEST_FILE, OnnxExportError, checkpoint_file_hashes, open_export, session_options, sha256_file

onnx = require("onnx", "onnx", "ONNX export")  # a missing extra is one line, before any work
require("onnxruntime", "onnx", "ONNX export (int8 quantisation)")

OPSET = 18


class ImageEncoder(nn.Module):
    """pixel_values -> every vector a gallery keeps of an image (`OneNetModel.get_gallery_embeds`, in the order of
    `gallery.ARRAYS`): image_embeds (the representation captions start from), pooled_features (the grid mean, which
    the ImageNet classifier reads), and the retrieval- and tag-space vectors, so one graph serves captions, tags
    and a gallery build that needs no PyTorch (`gallery_encoder`)."""

    def __init__(self, model: OneNetModel):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
        embeds = self.model.get_gallery_embeds(pixel_values)
        return tuple(embeds[name] for name in ARRAYS)


class DecoderInit(nn.Module):
    """image_embeds -> the LSTM state (h, c) that starts a caption."""

    def __init__(self, model: OneNetModel):
        super().__init__()
        self.model = model

    def forward(self, image_embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, c, _ = self.model.initial_state(image_embeds)
        return h, c


class DecoderStep(nn.Module):
    """(input_ids, h, c, image_embeds) -> (log_probs, h, c): one generation step."""

    def __init__(self, model: OneNetModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, h, c, image_embeds):
        log_probs, (h, c, _) = self.model.decoder_step(input_ids, (h, c, image_embeds))
        return log_probs, h, c


def _graphs(model: OneNetModel) -> dict[str, tuple[nn.Module, tuple, list[str], list[str]]]:
    config, batch = model.config, 2
    embeds = torch.zeros(batch, config.hidden_size)
    state = torch.zeros(batch, config.decoder_layers, config.decoder_hidden_size)
    pixels = torch.zeros(batch, 3, config.image_size, config.image_size)
    return {
        "image_encoder": (ImageEncoder(model), (pixels,), ["pixel_values"], list(ARRAYS)),
        "decoder_init": (DecoderInit(model), (embeds,), ["image_embeds"], ["h", "c"]),
        "decoder_step": (
            DecoderStep(model),
            (torch.zeros(batch, dtype=torch.long), state, state, embeds),
            ["input_ids", "h", "c", "image_embeds"],
            ["log_probs", "h_out", "c_out"],
        ),
    }


def _export_graph(module: nn.Module, args: tuple, inputs: list[str], outputs: list[str], path: Path) -> None:
    dynamic_axes = {name: {0: "batch"} for name in inputs + outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def _quantize_int8(source: Path, target: Path, convolutions: bool) -> None:
    """Dynamic int8 quantisation, per channel. The backbone's convolutions stay fp32 (`convolutions=False`):
    quantising them dropped the image representation's cosine to PyTorch's to 0.88 on example photos."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = None if convolutions else ["MatMul", "Gemm"]
    previous = logging.root.level
    logging.root.setLevel(logging.ERROR)  # the quantiser warns about every tensor it leaves alone
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=op_types)
    finally:
        logging.root.setLevel(previous)


INT32_RANGE = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
BIAS_CORRECTION_IMAGES = 512  # calibration photos the bias correction measures means on (README, "Bias correction")


def quantize_static_int8(
    source: Path,
    target: Path,
    pixel_batches: list[np.ndarray],
    exclude: Sequence[str] = (),
    bias_correction_images: int = BIAS_CORRECTION_IMAGES,
    activation_percentile: float | None = None,
) -> None:
    """Static int8 (QDQ) quantisation of the image encoder: weights per output channel, activations with
    scales calibrated on `pixel_batches` (preprocessed photos), so every image gets the same scales whatever
    else is in its batch, and onnxruntime runs the convolutions on int8 kernels (VNNI/AMX where present).
    Each activation's range runs from its calibration minimum to its maximum, or, with `activation_percentile` P, is
    cut at the P-th percentile of its absolute values (onnxruntime's percentile calibration, histogrammed one batch
    at a time so memory stays bounded): closer representations, but captions further from fp32's (README,
    "Percentile ranges"). `exclude`: node names left in fp32; then `correct_int8_biases` on the first
    `bias_correction_images` of the same photos (0: none)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        """The photos in batches; onnxruntime's strided calibration reads them `set_range` at a time."""

        def __init__(self):
            self.set_range(0, len(pixel_batches))

        def __len__(self) -> int:
            return len(pixel_batches)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.batches = iter(pixel_batches[start_index:end_index])

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"pixel_values": batch}

    if activation_percentile is not None and not 50 < activation_percentile < 100:
        raise OneNetError(f"activation_percentile must lie between 50 and 100, got {activation_percentile}")
    if activation_percentile is None:
        calibration = {"calibrate_method": CalibrationMethod.MinMax}
    else:
        calibration = {
            "calibrate_method": CalibrationMethod.Percentile,
            "extra_options": {"CalibPercentile": activation_percentile, "CalibStridedMinMax": 1},
        }
    previous = logging.root.level
    logging.root.setLevel(logging.ERROR)
    prepared = target.with_suffix(".prepared.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibrator prints per batch
            quantize_static(
                str(prepared), str(target), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                **calibration,
            )  # fmt: skip
    finally:
        logging.root.setLevel(previous)
        prepared.unlink(missing_ok=True)
    if bias_correction_images:
        correct_int8_biases(source, target, pixel_batches, bias_correction_images)


def channel_means(
    model: onnx.ModelProto, tensors: Sequence[str], pixel_batches: Sequence[np.ndarray]
) -> dict[str, np.ndarray]:
    """Each tensor's mean per channel (axis 1) over the photos and positions, the graph's outputs replaced by them."""
    from onnxruntime import InferenceSession

    graph = onnx.ModelProto()
    graph.CopyFrom(model)
    del graph.graph.output[:]
    graph.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    session = InferenceSession(graph.SerializeToString(), session_options(), providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for batch in pixel_batches:
        for name, values in zip(tensors, session.run(list(tensors), {"pixel_values": batch}), strict=True):
            axes = (0, *range(2, values.ndim))
            sums[name] = sums.get(name, 0) + values.sum(axis=axes, dtype=np.float64)
            counts[name] = counts.get(name, 0) + values.size // values.shape[1]
    return {name: sums[name] / counts[name] for name in tensors}


def correct_int8_biases(
    source: Path, target: Path, pixel_batches: Sequence[np.ndarray], images: int = BIAS_CORRECTION_IMAGES
) -> None:
    """Empirical bias correction (Nagel et al. 2019): each int8 convolution of `target`, in graph order, gets its
    bias lowered by the mean shift (per output channel, before the activation) of its output from the fp32
    graph `source`'s, measured on the first `images` photos after the convolutions before it are
    corrected. Rounding the weights shifts each layer's mean output and later layers carry it on: with the
    correction 82% of dev captions match fp32's instead of 75%, at no cost in speed (README, "Bias correction")."""
    from onnx import numpy_helper

    parts, taken = [], 0
    for batch in pixel_batches:  # only the first `images` photos, never every calibration photo at once
        if taken >= images:
            break
        parts.append(batch[: images - taken])
        taken += len(parts[-1])
    photos = np.concatenate(parts)
    batches = [photos[i : i + 32] for i in range(0, len(photos), 32)]
    fp32, quantized = onnx.load(str(source)), onnx.load(str(target))
    fp32_outputs = {node.name: node.output[0] for node in fp32.graph.node if node.op_type == "Conv"}
    producer = {output: node for node in quantized.graph.node for output in node.output}
    initializers = {tensor.name: tensor for tensor in quantized.graph.initializer}
    convolutions = int8_convolutions(quantized)
    bias_nodes = [producer.get(node.input[2]) if len(node.input) > 2 else None for node in convolutions]
    if any(bias is None or bias.op_type != "DequantizeLinear" for bias in bias_nodes):
        raise OnnxExportError(f"{target} has an int8 convolution without a quantised bias to correct")
    reference = channel_means(fp32, [fp32_outputs[node.name] for node in convolutions], batches)
    for node, bias in tqdm(zip(convolutions, bias_nodes, strict=True), total=len(convolutions), desc="bias correction"):
        shift = channel_means(quantized, [node.output[0]], batches)[node.output[0]] - reference[fp32_outputs[node.name]]
        values, scale = initializers[bias.input[0]], numpy_helper.to_array(initializers[bias.input[1]])
        corrected = numpy_helper.to_array(values) * scale.astype(np.float64) - shift
        int32 = np.clip(np.round(corrected / scale), *INT32_RANGE).astype(np.int32)
        values.CopyFrom(numpy_helper.from_array(int32, values.name))
    partial = target.with_suffix(".corrected.onnx")
    try:
        onnx.save(quantized, str(partial))
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def int8_convolutions(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The convolutions of a QDQ graph whose weights are int8 (read through a DequantizeLinear), in graph order."""
    dequantized = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    return [node for node in model.graph.node if node.op_type == "Conv" and node.input[1] in dequantized]


FP32_BLOCKS = (0, 1)  # the backbone blocks static int8 leaves in fp32 (`static_int8_exclusions`)


def nodes_after_last_convolution(nodes: Sequence[onnx.NodeProto]) -> list[str]:
    """The image encoder's nodes after its last convolution, in graph order: that convolution's activation, the
    pooling, the norms, the projection and the shape arithmetic between them."""
    last = max(i for i, node in enumerate(nodes) if node.op_type == "Conv")
    return [node.name for node in nodes[last + 1 :]]


def static_int8_exclusions(graph: Path, fp32_blocks: Sequence[int] = FP32_BLOCKS) -> list[str]:
    """The image encoder's nodes static int8 leaves in fp32: the stem, the blocks `fp32_blocks`, the last convolution
    and every node after it. Measured on 1,000 dev photos (README, "Which layers stay fp32"): with no block in fp32
    one photo's representation fell to cosine 0.975 with fp32 (1st percentile 0.985); the first blocks run at the
    highest resolution on few channels, and their rounding is carried by every later layer: with blocks 0-1 in fp32
    the lowest was 0.993, for 14.5-18% of the network's int8 speed in the two runs that timed both
    (bench/quality/static_int8_choices.py). The nodes after the last convolution run in fp32 anyway; excluding only the
    projection left onnxruntime rounding the grid mean that feeds the norms, both norms' outputs and the
    representation itself to 8 bits (README, "The head in fp32")."""
    nodes = onnx.load(str(graph)).graph.node
    convolutions = [node.name for node in nodes if node.op_type == "Conv"]
    prefixes = tuple(f"/backbone/_blocks.{number}/" for number in fp32_blocks)
    blocks = [node.name for node in nodes if node.op_type in ("Conv", "Add") and node.name.startswith(prefixes)]
    if prefixes and not blocks:
        raise OnnxExportError(f"{graph} has no nodes named {prefixes[0]}...: the exporter's naming changed")
    return [convolutions[0], *blocks, convolutions[-1], *nodes_after_last_convolution(nodes)]


def export_onnx(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    int8_dynamic: bool = True,
    fp16: bool = False,
    calibration_images: Sequence[str | os.PathLike] = (),
    gallery_encoder_only: bool = False,
    bias_correction_images: int = BIAS_CORRECTION_IMAGES,
    int8: bool | None = None,
) -> dict:
    """Write `{name}.onnx` (fp32), `{name}.int8-dynamic.onnx` (dynamic int8) and optionally `{name}.fp16.onnx`, plus
    `manifest.json` with the opset, input/output names, file hashes and the checkpoint's fingerprint. With
    `calibration_images` (photos like the galleries to index), also `image_encoder.int8-static.onnx`: static
    int8, the fast gallery-embedding path (`static_int8_exclusions` says what stays fp32 and why).
    `gallery_encoder_only`: the image encoder alone, static int8 with calibration images (under 20 MB, small enough to
    ship inside a checkpoint), else fp32; `backend="auto"` then embeds galleries with it and runs everything else
    on PyTorch.
    `bias_correction_images`: the calibration photos its bias correction reads (0: none; `quantize_static_int8`).
    `int8`: the old name of `int8_dynamic`, kept until the next release (with a FutureWarning).

    Every graph is written into a hidden temporary folder inside `out_dir` first; only then is the old manifest
    removed, the graphs renamed into place and the new manifest written, last. A run killed while writing leaves
    the previous export as it was (its temporary folder is removed by the next export); one killed while renaming
    leaves no manifest, which the backend reports as no export (`OnnxOneNetBackend` checks every hash)."""
    checkpoint = check_model_folder(Path(checkpoint))  # before anything is written
    if int8 is not None:
        warnings.warn(
            "export_onnx's int8= is now int8_dynamic=; the old name goes in the next release", FutureWarning, 2
        )
        int8_dynamic = int8
    if len(calibration_images) > MAX_CALIBRATION_IMAGES:
        raise OneNetError(f"at most {MAX_CALIBRATION_IMAGES:,} calibration images, got {len(calibration_images):,}")
    out = check_output_folder(Path(out_dir) if out_dir else checkpoint / "onnx", "ONNX folder")  # before loading
    with loading_checkpoint(checkpoint):
        model = OneNetModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    with temporary_folder(out, ".export.") as building:
        static = {"calibration_images": calibration_images, "bias_correction_images": bias_correction_images}
        graphs = _write_graphs(model, building, int8_dynamic, fp16, **static, gallery_encoder_only=gallery_encoder_only)
        (out / MANIFEST_FILE).unlink(missing_ok=True)  # no manifest beside a mix of old and new graphs
        for graph in graphs.values():
            for file in graph["files"].values():
                os.replace(building / file["path"], out / file["path"])
    manifest = {
        "format": "onenet-onnx",
        "opset": OPSET,
        "checkpoint_fingerprint": checkpoint_fingerprint(checkpoint),
        "checkpoint_files": checkpoint_file_hashes(checkpoint),  # lets a load check the fingerprint torch-free
        "torch_version": torch.__version__.split("+")[0],
        "graphs": graphs,
    }
    write_json(manifest, out / MANIFEST_FILE)
    return manifest


def export_once(checkpoint: str | os.PathLike, variant: str, cache_dir: str | os.PathLike = EXPORT_CACHE_DIR) -> Path:
    """An export folder of `checkpoint` holding every graph captions run in `variant`: CHECKPOINT/onnx when it
    does (a full export), else one made once under `cache_dir` (keyed by the checkpoint's fingerprint; 5.6 s
    for the shipped checkpoint on 2 cores, said on stderr) and found there at the next start. Why: a checkout's
    checkpoint ships only its gallery encoder, and the Space's captions and tags need the decoder's graphs."""
    checkpoint, variant = check_model_folder(Path(checkpoint)), variant_name(variant)
    cached = Path(cache_dir) / checkpoint_fingerprint(checkpoint)
    for folder in (checkpoint / "onnx", cached):
        try:
            if _has_graphs(open_export(checkpoint, folder)[1], CAPTION_GRAPHS, variant):
                return folder
        except OnnxExportError:
            continue  # none there, or another checkpoint's
    started = time.perf_counter()
    print(f"exporting the ONNX graphs of {checkpoint} once into {cached} (reused at the next start)", file=sys.stderr)
    export_onnx(checkpoint, cached, int8_dynamic=variant == "int8-dynamic")
    print(f"exported in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return cached


def _has_graphs(manifest: dict, names: Sequence[str], variant: str) -> bool:
    """Whether the manifest lists each graph of `names` in `variant`."""
    return all(name in manifest["graphs"] and variant in manifest["graphs"][name]["files"] for name in names)


def _write_graphs(
    model: OneNetModel,
    out: Path,
    int8_dynamic: bool,
    fp16: bool,
    calibration_images: Sequence[str | os.PathLike],
    bias_correction_images: int = BIAS_CORRECTION_IMAGES,
    gallery_encoder_only: bool = False,
) -> dict[str, dict]:
    """Export each graph and its variants into `out`; the manifest's `graphs` entry (names, files, hashes).
    `gallery_encoder_only`: the image encoder alone (static int8 when calibrated: its fp32 source stays unlisted)."""
    graphs: dict[str, dict] = {}
    for name, (module, args, inputs, outputs) in _graphs(model).items():
        if gallery_encoder_only and name != "image_encoder":
            continue
        files = {"fp32": out / f"{name}.onnx"}
        _export_graph(module, args, inputs, outputs, files["fp32"])
        if int8_dynamic and not gallery_encoder_only:
            files["int8-dynamic"] = out / f"{name}.int8-dynamic.onnx"
            _quantize_int8(files["fp32"], files["int8-dynamic"], convolutions=name != "image_encoder")
        if calibration_images and name == "image_encoder":
            files["int8-static"] = out / f"{name}.int8-static.onnx"
            processor = OneNetImageProcessor()
            batches = [
                processor([load_image(p) for p in calibration_images[i : i + 32]], return_tensors="np")["pixel_values"]
                for i in range(0, len(calibration_images), 32)
            ]
            exclude = static_int8_exclusions(files["fp32"])
            quantize_static_int8(files["fp32"], files["int8-static"], batches, exclude, bias_correction_images)
        if gallery_encoder_only:
            files = {"int8-static": files["int8-static"]} if calibration_images else {"fp32": files["fp32"]}
        elif fp16:
            from onnxruntime.transformers.float16 import convert_float_to_float16

            files["fp16"] = out / f"{name}.fp16.onnx"
            onnx.save(convert_float_to_float16(onnx.load(str(files["fp32"])), keep_io_types=True), str(files["fp16"]))
        graphs[name] = {
            "inputs": inputs,
            "outputs": outputs,
            "files": {variant: {"path": f.name, "sha256": sha256_file(f)} for variant, f in files.items()},
        }
    return graphs
