"""ONNX export and the onnxruntime backend: same answers as PyTorch, clear errors on a wrong folder."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from export import MANIFEST_FILE, export_onnx
from onenet_hf import OneNet
from onenet_hf.onnx_backend import OnnxExportError
from onenet_hf.samples import sample_photos

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(shapes_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    return export_onnx(shapes_model, out), out


def _images(shapes_dir):
    return [*sample_photos()[:3], *sorted((shapes_dir / "images").glob("dev_*.jpg"))[:6]]


def test_manifest_and_deterministic_export(exported, shapes_model, tmp_path):
    manifest, out = exported
    assert json.loads((out / MANIFEST_FILE).read_text()) == manifest
    assert manifest["opset"] >= 17 and set(manifest["graphs"]) == {"image_encoder", "decoder_init", "decoder_step"}
    assert manifest["graphs"]["decoder_step"]["inputs"] == ["input_ids", "h", "c", "image_embeds"]
    again = export_onnx(shapes_model, tmp_path, int8=False)
    for name, graph in again["graphs"].items():
        assert graph["files"]["fp32"] == manifest["graphs"][name]["files"]["fp32"], name
    assert export_onnx(shapes_model, tmp_path, int8=False) == again  # idempotent


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
    net = OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out, onnx_variant="int8")
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
    with pytest.raises(OnnxExportError, match="no fp16 variant"):
        OneNet.from_pretrained(shapes_model, backend="onnx", onnx_dir=out, onnx_variant="fp16")
