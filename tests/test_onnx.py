"""ONNX export and the onnxruntime backend: same answers as PyTorch, clear errors on a wrong folder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from onenet_hf import OneNet, OneNetImageProcessor
from onenet_hf.cli import build_parser, main
from onenet_hf.data.example_photos import example_photos
from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import evaluate
from onenet_hf.onnx.backend import MANIFEST_FILE, OnnxExportError
from onenet_hf.onnx.export import export_onnx, nodes_after_last_convolution
from onenet_hf.onnx.graphs import OnnxGalleryEncoder
from onenet_hf.representations import ARRAYS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(shapes_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return export_onnx(shapes_model, out), out


def _images(shapes_dir):
    return [*example_photos()[:3], *sorted((shapes_dir / "images").glob("dev_*.jpg"))[:6]]


def test_manifest_and_deterministic_export(exported, shapes_model, tmp_path):
    manifest, out = exported
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert manifest["opset"] >= 17 and set(manifest["graphs"]) == {"image_encoder", "decoder_init", "decoder_step"}
    assert manifest["graphs"]["decoder_step"]["inputs"] == ["input_ids", "h", "c", "image_embeds"]
    assert manifest["graphs"]["image_encoder"]["outputs"] == list(ARRAYS)  # every gallery array (test_onnx_graphs)
    again = export_onnx(shapes_model, tmp_path, int8_dynamic=False)
    for name, graph in again["graphs"].items():
        assert graph["files"]["fp32"] == manifest["graphs"][name]["files"]["fp32"], name
    assert export_onnx(shapes_model, tmp_path, int8_dynamic=False) == again  # idempotent


def test_image_representations_match_pytorch(exported, shapes_model, shapes_dir):
    _, out = exported
    torch_net = OneNet.from_pretrained(shapes_model)
    onnx_net = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    pixels = torch_net.processor(images=_images(shapes_dir))["pixel_values"]
    with torch.no_grad():
        expected = torch_net.model.get_image_features(pixels)
    got = onnx_net.model.get_image_features(pixels)
    assert torch.nn.functional.cosine_similarity(expected, got).min() >= 0.9999


@pytest.mark.parametrize("beam_size", [1, 3])
def test_captions_match_pytorch(exported, shapes_model, shapes_dir, beam_size):
    _, out = exported
    images = _images(shapes_dir)
    torch_captions = OneNet.from_pretrained(shapes_model).caption(images, beam_size=beam_size)
    onnx_net = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    onnx_captions = onnx_net.caption(images, beam_size=beam_size)
    assert [c.text for c in onnx_captions] == [c.text for c in torch_captions]
    assert [c.score for c in onnx_captions] == pytest.approx([c.score for c in torch_captions], abs=1e-3)


def test_int8_variant_runs(exported, shapes_model, shapes_dir):
    _, out = exported
    net = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out, onnx_variant="int8-dynamic")
    captions = net.caption(sorted((shapes_dir / "images").glob("dev_*.jpg"))[:2])
    assert all(c.text for c in captions)


def test_missing_or_mismatched_export_is_a_clear_error(exported, shapes_model, tmp_path):
    _, out = exported
    with pytest.raises(OnnxExportError, match="no ONNX export"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=tmp_path / "nothing")
    other = tmp_path / "other"
    shutil.copytree(shapes_model, other)
    net = OneNet.from_pretrained(other)
    with torch.no_grad():
        net.model.decoder.output_bias.add_(1.0)
    net.save_pretrained(other)
    with pytest.raises(OnnxExportError, match="made from another checkpoint"):
        OneNet.from_pretrained(other, backend="onnx", onnx_dir=out)
    with pytest.raises(OneNetError, match="unknown ONNX variant 'int4'"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out, onnx_variant="int4")


@pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="a GPU is present")
def test_fp16_variant_is_refused_without_a_gpu(exported, shapes_model):
    _, out = exported
    with pytest.raises(OneNetError, match="fp16 ONNX variant needs CUDAExecutionProvider"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out, onnx_variant="fp16")


def test_shipped_checkpoint_parity_on_example_photos(tmp_path):
    checkpoint = Path(__file__).resolve().parents[1] / "checkpoints" / "onenet-flickr8k"
    export_onnx(checkpoint, tmp_path, int8_dynamic=False)
    photos = example_photos()
    torch_net = OneNet.from_pretrained(checkpoint)
    onnx_net = OneNet.from_pretrained(checkpoint, backend="onnx", onnx_dir=tmp_path)
    pixels = torch_net.processor(images=photos)["pixel_values"]
    with torch.no_grad():
        expected = torch_net.model.get_image_features(pixels)
    assert torch.nn.functional.cosine_similarity(expected, onnx_net.model.get_image_features(pixels)).min() >= 0.9999
    for beam_size in (1, 3):
        assert [c.text for c in onnx_net.caption(photos, beam_size=beam_size)] == [
            c.text for c in torch_net.caption(photos, beam_size=beam_size)
        ]


def test_a_variant_missing_from_the_export_is_named(shapes_model, tmp_path):
    export_onnx(shapes_model, tmp_path, int8_dynamic=False)
    with pytest.raises(OnnxExportError, match="no int8-dynamic variant of image_encoder"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=tmp_path, onnx_variant="int8-dynamic")


def test_evaluate_captions_on_the_onnx_backend(exported, shapes_model, shapes_dir, feature_cache):
    _, out = exported
    onnx_net = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    result = evaluate(onnx_net, "captions", data_dir=shapes_dir, split="dev", beam_size=2, cache_dir=feature_cache)
    paths = sorted((shapes_dir / "images").glob("dev_*.jpg"))
    captions = onnx_net.caption(paths, beam_size=2)
    expected = {path.name: caption.text for path, caption in zip(paths, captions, strict=True)}
    assert result["backend"] == "onnx-fp32" and result["beam_size"] == 2 and result["images"] == len(paths)
    assert dict(result["captions"]) == expected  # the ONNX backend captions the image files
    assert result["metrics"]["CIDEr"] > 1.0
    with pytest.raises(OneNetError, match="the tags task runs on the PyTorch backend"):
        evaluate(onnx_net, "tags", data_dir=shapes_dir, split="dev", cache_dir=feature_cache)


def test_the_auto_backend_tags_and_captions_as_pytorch_does(shapes_model_with_heads, shapes_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(shapes_model_with_heads, model, ignore=shutil.ignore_patterns("*.pt"))
    export_onnx(model, int8_dynamic=False)
    images = sorted((shapes_dir / "images").glob("dev_*.jpg"))[:4]
    torch_net, auto = OneNet.from_pretrained(model), OneNet.from_pretrained(model, backend="auto")
    assert auto.onnx is not None and auto.onnx.has_pooled_features and torch_net.onnx is None
    pixels = torch_net.processor(images=images)["pixel_values"]
    with torch.no_grad():
        expected = torch_net.model.get_pooled_features(torch_net.model.get_backbone_features(pixels))
    assert torch.allclose(auto.onnx.get_image_and_pooled_features(pixels)[1], expected, atol=1e-4)
    assert [c.text for c in auto.caption(images, 2)] == [c.text for c in torch_net.caption(images, 2)]
    for got, want in zip(auto.tag(images, 5), torch_net.tag(images, 5), strict=True):
        assert [w.word for w in got.words] == [w.word for w in want.words]
        assert [w.score for w in got.words] == pytest.approx([w.score for w in want.words], abs=1e-3)
        assert [w.word for w in got.imagenet] == [w.word for w in want.imagenet]
    gallery = sorted((shapes_dir / "images").glob("train_*.jpg"))[:12]
    index = torch_net.build_index(gallery, tmp_path / "index")
    for query in images:  # photos from outside the gallery: embedded by the ONNX encoder, then searched
        got, want = auto.similar_images(index, query, 3), torch_net.similar_images(index, query, 3)
        assert [m.path for m in got] == [m.path for m in want]
        assert [m.score for m in got] == pytest.approx([m.score for m in want], abs=1e-4)
    manifest = json.loads((model / "onnx" / MANIFEST_FILE).read_text())
    manifest["graphs"]["image_encoder"]["outputs"] = ["image_embeds"]  # as exports before pooled features were
    (model / "onnx" / MANIFEST_FILE).write_text(json.dumps(manifest))
    older = OneNet.from_pretrained(model, backend="auto")
    assert not older.onnx.has_pooled_features and older.gallery_embedder().description == "PyTorch"
    with pytest.raises(OnnxExportError, match="gives no pooled features .* export it again"):
        older.onnx.get_image_and_pooled_features(pixels)
    assert [w.word for w in older.tag(images[0], 5)[0].words] == [w.word for w in torch_net.tag(images[0], 5)[0].words]


def test_the_auto_backend_is_pytorch_alone_without_an_export(shapes_model):
    assert OneNet.from_pretrained(shapes_model, backend="auto").onnx is None


def test_the_static_int8_image_encoder_is_the_fastest_variant_and_indexes(
    shapes_model_with_heads, shapes_dir, tmp_path
):
    model = tmp_path / "model"
    shutil.copytree(shapes_model_with_heads, model)
    calibration = sorted((shapes_dir / "images").glob("train_*.jpg"))[:16]  # never the photos compared below
    manifest = export_onnx(model, calibration_images=calibration, bias_correction_images=0)  # tested on its own
    assert {name: set(graph["files"]) for name, graph in manifest["graphs"].items()} == {
        "image_encoder": {"fp32", "int8-dynamic", "int8-static"},
        "decoder_init": {"fp32", "int8-dynamic"},
        "decoder_step": {"fp32", "int8-dynamic"},
    }
    graph = onnx.load(str(model / "onnx" / "image_encoder.int8-static.onnx")).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    int8_weights = {node.name: node.input[1] in dequantized for node in graph.node if node.op_type == "Conv"}
    fp32_convolutions = {name for name, quantised in int8_weights.items() if not quantised}
    first_blocks = {name for name in int8_weights if name.startswith(("/backbone/_blocks.0/", "/backbone/_blocks.1/"))}
    assert fp32_convolutions == {"/backbone/_conv_stem/Conv", "/backbone/_conv_head/Conv", *first_blocks}
    assert len(first_blocks) == 5 and len(int8_weights) - len(fp32_convolutions) > 40  # the rest runs on int8
    after = set(nodes_after_last_convolution(graph.node))
    head = [node for node in graph.node if node.name in after]
    assert {node.op_type for node in head} >= {"ReduceMean", "LayerNormalization", "Gemm"}
    assert not [node.name for node in head if set(node.input) & dequantized]  # no 8-bit rounding after the backbone
    producers = {output: node.op_type for node in graph.node for output in node.output}
    assert "DequantizeLinear" not in {producers[output.name] for output in graph.output}
    fastest = OneNet.from_pretrained(model, backend="auto", onnx_variant="fastest")
    assert fastest.onnx.batch_independent
    images = sorted((shapes_dir / "images").glob("dev_*.jpg"))[:8]
    pixels = fastest.processor(images=images)["pixel_values"]
    with torch.no_grad():
        expected = fastest.model.get_image_features(pixels)
    quantised, _ = fastest.onnx.get_image_and_pooled_features(pixels)
    cosines = torch.nn.functional.cosine_similarity(expected, quantised)
    assert cosines.min() >= 0.95 and not torch.equal(expected, quantised)  # quantised, and close
    alone = torch.cat([fastest.onnx.get_image_and_pooled_features(pixels[i : i + 1])[0] for i in range(8)])
    assert torch.allclose(alone, quantised, atol=1e-5)  # static scales: a photo's row ignores its batch
    index = fastest.build_index(images, tmp_path / "index")
    assert torch.allclose(torch.from_numpy(index.image_embeds[: len(images)]), quantised, atol=1e-4)
    assert index.metadata["build_changes"] == {"embedded": len(images), "reused": 0, "dropped": 0}
    assert fastest.gallery_embedder().description == "onnxruntime, image_encoder.int8-static.onnx"  # onenet index says
    space_like = OneNet.from_pretrained(model, backend="auto", onnx_variant="int8-dynamic")  # what the Space loads
    assert not space_like.onnx.batch_independent  # dynamic int8: its gallery is embedded by the fastest encoder
    assert space_like.gallery_embedder().description == "onnxruntime, image_encoder.int8-static.onnx"
    index = space_like.build_index(images, tmp_path / "space-index")
    assert torch.allclose(torch.from_numpy(index.image_embeds[: len(images)]), quantised, atol=1e-4)
    int8_static = OneNet.from_pretrained(model, backend="onnx", onnx_variant="int8-static")  # the graphs alone
    assert int8_static.model._graph_variant("decoder_step", manifest["graphs"]["decoder_step"]["files"]) == "fp32"
    assert len(int8_static.caption(images[:2])) == 2  # its fp32 decoders caption from the int8 representation


def _cpu_has_vnni() -> bool:
    """Whether this (Linux) CPU has int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


@pytest.mark.xfail(
    not _cpu_has_vnni(),
    strict=True,
    reason="without VNNI (an AVX2-only EPYC, 2026-12-06; onnxruntime 1.31.1 and 1.32.0 alike) the shifts shrank "
    "only 1.05-fold (median); with AVX-512 VNNI (a 2-core EPYC, 2026-12-07) the test passes. Likely cause, not "
    "verified: AVX2's u8s8 kernels saturate 16-bit sums, an error that follows the inputs, not a per-channel bias",
)
def test_bias_correction_shrinks_each_int8_convolutions_mean_shift_from_fp32(exported, shapes_dir, tmp_path):
    from onenet_hf.onnx.export import (
        channel_means,
        correct_int8_biases,
        int8_convolutions,
        quantize_static_int8,
        static_int8_exclusions,
    )

    fp32_graph = exported[1] / "image_encoder.onnx"
    photos = sorted((shapes_dir / "images").glob("train_*.jpg"))[:16]
    batches = [OneNetImageProcessor()(images=photos[i : i + 8], return_tensors="np")["pixel_values"] for i in (0, 8)]
    uncorrected, by_default = tmp_path / "uncorrected.onnx", tmp_path / "default.onnx"
    quantize_static_int8(fp32_graph, uncorrected, batches, static_int8_exclusions(fp32_graph), bias_correction_images=0)
    quantize_static_int8(fp32_graph, by_default, batches, static_int8_exclusions(fp32_graph))  # what the export runs

    def largest_shifts(graph: Path) -> list[float]:
        """Per int8 convolution, its largest per-channel mean difference from fp32 before the activation."""
        fp32, quantized = onnx.load(str(fp32_graph)), onnx.load(str(graph))
        reference = {node.name: node.output[0] for node in fp32.graph.node if node.op_type == "Conv"}
        convolutions = int8_convolutions(quantized)
        before = channel_means(fp32, [reference[n.name] for n in convolutions], batches)
        after = channel_means(quantized, [n.output[0] for n in convolutions], batches)
        return [float(abs(after[n.output[0]] - before[reference[n.name]]).max()) for n in convolutions]

    shifts = largest_shifts(uncorrected)
    assert len(shifts) > 40 and max(shifts) > 0.01
    # not to zero: exposing a convolution's output changes which int8 kernels onnxruntime fuses around it
    assert all(after < before / 5 for before, after in zip(shifts, largest_shifts(by_default), strict=True))
    correct_int8_biases(fp32_graph, uncorrected, batches)
    assert uncorrected.read_bytes() == by_default.read_bytes()  # the export's default is this correction


def test_percentile_ranges_are_cut_from_every_calibration_batch(exported, shapes_dir, tmp_path):
    from onnx import numpy_helper

    from onenet_hf.onnx.export import quantize_static_int8, static_int8_exclusions

    fp32_graph = exported[1] / "image_encoder.onnx"
    photos = sorted((shapes_dir / "images").glob("train_*.jpg"))[:16]
    batches = [OneNetImageProcessor()(images=photos[i : i + 8], return_tensors="np")["pixel_values"] for i in (0, 8)]
    exclude = static_int8_exclusions(fp32_graph)
    with pytest.raises(OneNetError, match="activation_percentile must lie between 50 and 100, got 100"):
        quantize_static_int8(fp32_graph, tmp_path / "refused.onnx", batches, exclude, activation_percentile=100)
    graphs = {name: tmp_path / f"{name}.onnx" for name in ("min_max", "percentile", "first_batch")}
    quantize_static_int8(fp32_graph, graphs["min_max"], batches, exclude, bias_correction_images=0)  # the default
    for name, photos_read in (("percentile", batches), ("first_batch", batches[:1])):
        quantize_static_int8(fp32_graph, graphs[name], photos_read, exclude, 0, activation_percentile=99.9)

    def activation_scales(graph: Path) -> dict[str, float]:
        """Each quantised activation's 8-bit step (weights are stored quantised, with no QuantizeLinear)."""
        model = onnx.load(str(graph))
        scales = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
        return {n.input[0]: float(scales[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}

    widest, cut, first = (activation_scales(graph) for graph in graphs.values())
    assert widest.keys() == cut.keys() == first.keys() and len(widest) > 40
    ratios = np.array([cut[name] / widest[name] for name in widest])
    assert (ratios < 0.9).sum() >= 5  # some ranges cut their outliers
    assert sum(cut[name] != first[name] for name in cut) >= 5  # the second batch was read too


# A killed or damaged export: the previous export stays usable, or loading fails in one line that says to export again.


def _copy_of_export(exported, tmp_path: Path) -> Path:
    copy = tmp_path / "onnx"
    shutil.copytree(exported[1], copy)
    return copy


def _files(folder: Path) -> dict[str, bytes | None]:
    return {p.name: p.read_bytes() if p.is_file() else None for p in folder.iterdir()}


def test_an_export_that_fails_midway_leaves_the_previous_export_or_none(exported, shapes_model, tmp_path, monkeypatch):
    import onenet_hf.onnx.export as onnx_export

    out = _copy_of_export(exported, tmp_path)
    before = _files(out)
    export_graph = onnx_export._export_graph

    def interrupted_after_the_first_graph(module, args, inputs, outputs, path):
        if path.name != "image_encoder.onnx":
            raise KeyboardInterrupt
        export_graph(module, args, inputs, outputs, path)

    monkeypatch.setattr(onnx_export, "_export_graph", interrupted_after_the_first_graph)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(shapes_model, out, int8_dynamic=False)
    assert _files(out) == before  # nothing replaced, no temporary folder left
    image = sorted(example_photos())[:1]
    assert OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out).caption(image)[0].text
    monkeypatch.undo()
    replace, renamed = os.replace, []

    def interrupted_after_the_first_rename(source, target):
        if renamed:
            raise KeyboardInterrupt
        replace(source, target)
        renamed.append(target)

    monkeypatch.setattr(onnx_export.os, "replace", interrupted_after_the_first_rename)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(shapes_model, out, int8_dynamic=False)
    monkeypatch.undo()
    assert not (out / MANIFEST_FILE).exists() and not [p for p in out.iterdir() if p.name.startswith(".")]
    with pytest.raises(OnnxExportError, match="no ONNX export"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    assert OneNet.from_pretrained(shapes_model, backend="auto", onnx_dir=out).onnx is None  # PyTorch runs it all


KILLED_EXPORT = """
import os, signal, sys
from pathlib import Path
import onenet_hf.onnx.export as onnx_export
export_graph = onnx_export._export_graph

def killed_after_the_first_graph(module, args, inputs, outputs, path):
    if path.name != "image_encoder.onnx":
        os.kill(os.getpid(), signal.SIGKILL)
    export_graph(module, args, inputs, outputs, path)

onnx_export._export_graph = killed_after_the_first_graph
onnx_export.export_onnx(sys.argv[1], sys.argv[2], int8_dynamic=False)
"""


def test_an_export_killed_midway_leaves_the_previous_export_and_the_next_one_tidies_up(
    exported, shapes_model, tmp_path
):
    out = _copy_of_export(exported, tmp_path)
    before = _files(out)
    killed = subprocess.run([sys.executable, "-c", KILLED_EXPORT, str(shapes_model), str(out)], timeout=300)
    assert killed.returncode == -signal.SIGKILL
    (leftover,) = [p for p in out.iterdir() if p.name.startswith(".")]
    assert (leftover / "image_encoder.onnx").is_file()
    assert {name: data for name, data in _files(out).items() if name != leftover.name} == before
    image = sorted(example_photos())[:1]
    assert OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out).caption(image)[0].text
    manifest = export_onnx(shapes_model, out, int8_dynamic=False)
    assert not leftover.exists() and not [p for p in out.iterdir() if p.name.startswith(".")]
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out).caption(image)[0].text


def test_a_damaged_graph_or_manifest_is_one_line_that_says_export_again(exported, shapes_model, tmp_path, capsys):
    out = _copy_of_export(exported, tmp_path)
    graph = out / "image_encoder.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])  # what a killed in-place write left
    with pytest.raises(OnnxExportError, match="image_encoder.onnx differs from the export's manifest.*; export again"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    assert OneNet.from_pretrained(shapes_model, backend="auto", onnx_dir=out).onnx is None
    photo = str(example_photos()[0])
    assert main(["caption", photo, "--model", str(shapes_model), "--backend", "onnx", "--onnx-dir", str(out)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("onenet caption: error: ") and error.endswith("export again")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    outside = json.loads(json.dumps(manifest))
    outside["graphs"]["decoder_init"]["files"]["fp32"]["path"] = "../model.safetensors"
    for text, message in [
        ("{not json", "is not readable JSON"),
        ("[]", "is not a manifest of onenet export"),
        (json.dumps({k: v for k, v in manifest.items() if k != "graphs"}), "is not a manifest of onenet export"),
        (json.dumps({**manifest, "graphs": {"image_encoder": {"files": {}}}}), "is not a manifest of onenet export"),
        (json.dumps(outside), "is not a manifest of onenet export"),
    ]:
        (out / MANIFEST_FILE).write_text(text)
        with pytest.raises(OnnxExportError, match=f"{message}.*; export again: onenet export"):
            OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    # garbage whose hash the manifest was given too: onnxruntime cannot load it, which is the same one line
    garbage = b"not a graph" * 100
    graph.write_bytes(garbage)
    manifest["graphs"]["image_encoder"]["files"]["fp32"]["sha256"] = hashlib.sha256(garbage).hexdigest()
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(OnnxExportError, match="image_encoder.onnx is not a graph onnxruntime can load .*export again"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out)
    with pytest.raises(OnnxExportError, match="image_encoder.onnx is not a graph onnxruntime can load"):
        OnnxGalleryEncoder(shapes_model, out, "fp32")


def test_the_old_int8_name_loads_an_older_export_for_one_release_and_says_what_replaces_it(
    exported, shapes_model, shapes_dir, tmp_path, capsys
):
    _, out = exported
    old = tmp_path / "older-export"
    shutil.copytree(out, old)
    manifest = json.loads((old / MANIFEST_FILE).read_text())
    for graph in manifest["graphs"].values():  # as an export made before the rename named its files and keys
        if "int8-dynamic" in graph["files"]:
            entry = graph["files"].pop("int8-dynamic")
            renamed = entry["path"].replace(".int8-dynamic.", ".int8.")
            os.rename(old / entry["path"], old / renamed)
            graph["files"]["int8"] = {**entry, "path": renamed}
    (old / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.warns(FutureWarning, match="the ONNX variant 'int8' is now 'int8-dynamic'"):
        older = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=old, onnx_variant="int8")
    assert older.model.variant == "int8-dynamic" and not older.model.batch_independent
    current = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out, onnx_variant="int8-dynamic")
    image = sorted((shapes_dir / "images").glob("dev_*.jpg"))[:1]
    assert older.caption(image)[0].text == current.caption(image)[0].text
    assert build_parser().parse_args(["caption", "x", "--onnx-variant", "int8"]).onnx_variant == "int8-dynamic"
    assert capsys.readouterr().err == "onenet: --onnx-variant int8 is deprecated, use int8-dynamic\n"
    assert build_parser().parse_args(["export", "x", "--no-int8"]).int8_dynamic is False
    assert capsys.readouterr().err == "onenet: --no-int8 is deprecated, use --no-int8-dynamic\n"


def test_an_out_folder_that_is_a_file_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    checkpoint = Path(__file__).resolve().parents[1] / "checkpoints" / "onenet-flickr8k"
    monkeypatch.setattr("onenet_hf.onnx.export.OneNetModel.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    file = tmp_path / "graphs"
    file.write_text("not a folder")
    with pytest.raises(OneNetError, match="graphs is a file, not a folder: give a folder to write into"):
        export_onnx(checkpoint, out_dir=file)
    with pytest.raises(OneNetError, match="ONNX folder .*onnx: .*graphs is a file, not a folder"):
        export_onnx(checkpoint, out_dir=file / "onnx")
    assert main(["export", str(checkpoint), "--out", str(file)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onenet export: error: ") and "is a file, not a folder" in lines[0]
    assert file.read_text() == "not a folder" and list(tmp_path.iterdir()) == [file]
