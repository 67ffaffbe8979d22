"""The exported gallery encoder: every gallery array from one onnxruntime run, an `onenet index` with no PyTorch in
its process, and the torch-free check that an export belongs to its checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from onenet_hf import OneNet, fingerprint
from onenet_hf.cli import main
from onenet_hf.fingerprint import checkpoint_fingerprint as model_fingerprint_of
from onenet_hf.fingerprint import model_fingerprint
from onenet_hf.gallery.index import GalleryIndex
from onenet_hf.images import load_image, pixel_values
from onenet_hf.onnx.export import export_onnx
from onenet_hf.onnx.graphs import MANIFEST_FILE, OnnxExportError, OnnxGalleryEncoder
from onenet_hf.representations import ARRAYS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported_model(shapes_model_with_heads, tmp_path_factory) -> Path:
    """The headed test model laid out as the repository's checkpoint ships: its gallery encoder alone in
    MODEL/onnx, here fp32 (the static int8 one is tested in test_onnx and test_shipped_checkpoint)."""
    model = tmp_path_factory.mktemp("graphs") / "model"
    shutil.copytree(shapes_model_with_heads, model, ignore=shutil.ignore_patterns("*.pt"))
    export_onnx(model, gallery_encoder_only=True)
    return model


def _dev_images(shapes_dir: Path, count: int = 6) -> list[Path]:
    return sorted((shapes_dir / "images").glob("dev_*.jpg"))[:count]


def test_the_gallery_encoder_gives_every_array_as_pytorch_does(exported_model, shapes_dir):
    images = _dev_images(shapes_dir)
    net = OneNet.from_pretrained(exported_model)
    with torch.no_grad():
        expected = net.model.get_gallery_embeds(net.processor(images=images)["pixel_values"])
    encoder = OnnxGalleryEncoder(exported_model, variant="fp32")
    got = encoder.embed(pixel_values([load_image(p) for p in images]))
    assert set(got) == set(ARRAYS) and encoder.file == "image_encoder.onnx"
    for name in ARRAYS:
        assert got[name].dtype == (np.float16 if name == "pooled_features" else np.float32), name
        have, want = got[name].astype(np.float64), expected[name].double().numpy()
        cosines = (have * want).sum(1) / np.linalg.norm(have, axis=1) / np.linalg.norm(want, axis=1)
        assert cosines.min() >= 0.9999, name
    assert encoder.fingerprint == model_fingerprint(net.model)
    assert encoder.representation_size == net.model.config.hidden_size
    assert OnnxGalleryEncoder(exported_model).file == "image_encoder.onnx"  # fastest: fp32 where no int8-static


def test_onenet_index_on_an_export_imports_no_torch_and_builds_what_onenet_builds(exported_model, shapes_dir, tmp_path):
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for path in _dev_images(shapes_dir, 8):
        shutil.copyfile(path, gallery / path.name)
    (gallery / "notes.jpg").write_text("not an image")
    arguments = ["index", str(gallery), "--model", str(exported_model), "--out", str(tmp_path / "cli")]
    script = (
        f"import sys\nfrom onenet_hf.cli import main\nrc = main({arguments!r})\n"
        "print('imported:', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\nsys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "imported: []" in done.stdout and "indexed 8 images" in done.stdout
    assert "embedding new or changed images with onnxruntime, image_encoder.onnx" in done.stderr
    assert "skipped " in done.stderr and "notes.jpg" in done.stderr
    net = OneNet.from_pretrained(exported_model, backend="auto", onnx_variant="fastest")
    library = net.build_index(gallery, tmp_path / "library")
    cli = net.load_index(tmp_path / "cli")  # the same fingerprint: the model accepts the index the CLI built
    assert cli.paths == library.paths and cli.metadata["skipped"] == library.metadata["skipped"]
    for name in ARRAYS:
        assert np.array_equal(getattr(cli, name), getattr(library, name)), name
    query = _dev_images(shapes_dir)[0]
    assert [m.path for m in net.similar_images(cli, query, 3)] == [
        m.path for m in net.similar_images(library, query, 3)
    ]


def test_an_older_export_indexes_with_pytorch_and_says_why(exported_model, shapes_dir, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(exported_model, model)
    manifest = json.loads((model / "onnx" / MANIFEST_FILE).read_text())
    manifest["graphs"]["image_encoder"]["outputs"] = ["image_embeds", "pooled_features"]  # before the gallery arrays
    (model / "onnx" / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(OnnxExportError, match="gives no retrieval_embeds or tag_embeds .* export again"):
        OnnxGalleryEncoder(model)
    assert OneNet.from_pretrained(model, backend="auto").gallery_embedder().description == "PyTorch"
    gallery = _dev_images(shapes_dir, 3)[0].parent
    assert main(["index", str(gallery), "--model", str(model), "--out", str(tmp_path / "index")]) == 0
    err = capsys.readouterr().err
    assert "not using the ONNX export: the image encoder exported at" in err
    assert "embedding new or changed images with PyTorch" in err
    assert len(GalleryIndex.load(tmp_path / "index")) > 0


def test_the_export_is_checked_against_its_checkpoint_without_torch_and_with_it(exported_model, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(exported_model, model)
    recorded = json.loads((model / "onnx" / MANIFEST_FILE).read_text())
    assert set(recorded["checkpoint_files"]) == {"config.json", "model.safetensors"}
    computed = []
    monkeypatch.setattr(fingerprint, "checkpoint_fingerprint", lambda f: computed.append(f) or model_fingerprint_of(f))
    assert OnnxGalleryEncoder(model).fingerprint == recorded["checkpoint_fingerprint"] and computed == []  # by hashes
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(config, indent=4))  # other bytes, the same network
    assert OnnxGalleryEncoder(model).fingerprint == recorded["checkpoint_fingerprint"] and computed == [model]
    config["hidden_size"] += 1  # another network
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(OnnxExportError, match="made from another checkpoint"):
        OnnxGalleryEncoder(model)


def test_a_gallery_encoder_alone_embeds_galleries_and_leaves_captions_to_pytorch(exported_model, shapes_dir):
    manifest = json.loads((exported_model / "onnx" / MANIFEST_FILE).read_text())
    assert {name: set(graph["files"]) for name, graph in manifest["graphs"].items()} == {"image_encoder": {"fp32"}}
    assert sorted(p.name for p in (exported_model / "onnx").iterdir()) == ["image_encoder.onnx", MANIFEST_FILE]
    auto = OneNet.from_pretrained(exported_model, backend="auto", onnx_variant="fastest")
    assert auto.onnx is not None and not auto.onnx.has_decoder
    assert auto.gallery_embedder().description == "onnxruntime, image_encoder.onnx"
    images = _dev_images(shapes_dir, 3)
    pytorch = OneNet.from_pretrained(exported_model)
    assert [c.text for c in auto.caption(images, 2)] == [c.text for c in pytorch.caption(images, 2)]
    space_like = OneNet.from_pretrained(
        exported_model, backend="auto", onnx_variant="int8-dynamic"
    )  # no int8 graph here
    assert space_like.onnx is None
    assert space_like.gallery_embedder().description == "onnxruntime, image_encoder.onnx"
    with pytest.raises(OnnxExportError, match="no decoder_init, decoder_step graph"):
        OneNet.from_pretrained(exported_model, backend="onnx")
