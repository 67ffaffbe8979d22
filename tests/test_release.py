"""`onenet release` writes a complete Hub model repo; `onenet push --dry-run` lists it; the shipped one is such."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from onenet_hf import OneNet, OneNetConfig, OneNetImageProcessor, OneNetModel, OneNetProcessor, build_tokenizer
from onenet_hf.cli import main
from onenet_hf.data.example_photos import example_photos
from onenet_hf.publish.release import ReleaseError, eval_results, front_matter_free, write_release

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "onenet-flickr8k"
CAPTIONS = {"model": "m", "task": "captions", "dataset": "flickr8k", "split": "dev", "images": 2, "beam_size": 3}
CAPTIONS["metrics"] = {"BLEU-4": 0.2109, "CIDEr": 0.5392}
TAGS = {"model": "m", "task": "tags", "dataset": "flickr8k", "split": "dev", "metrics": {"tag_precision@5": 0.6122}}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = OneNetModel(OneNetConfig(vocab_size=9, hidden_size=16, word_embedding_size=8, decoder_hidden_size=16))
    tokenizer = build_tokenizer(["a red circle", "a blue square"], min_frequency=1)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    OneNet(model, OneNetProcessor(image_processor=OneNetImageProcessor(), tokenizer=tokenizer)).save_pretrained(folder)
    (folder / "training_log.json").write_text("[]\n")
    (folder / "scst_training_log.json").write_text('[{"epoch": 0, "CIDEr": 0.5}]\n')
    return folder


def _evaluations(folder: Path) -> list[str]:
    files = []
    for name, result in (("captions.json", CAPTIONS), ("tags.json", TAGS)):
        (folder / name).write_text(json.dumps(result))
        files.append(str(folder / name))
    return files


def test_release_is_a_complete_repo_whose_card_metrics_come_from_the_evaluations(tiny_model, tmp_path):
    body = tmp_path / "card.md"
    body.write_text("---\nlicense: mit\n---\n\n# Tiny\n\nHand-written body.\n")
    out = write_release(tiny_model, tmp_path / "release", _evaluations(tmp_path), body, "tiny", onnx=False)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {"README.md", "config.json", "model.safetensors", "generation_config.json", "tokenizer.json"}
    assert expected | {"preprocessor_config.json", "training_log.json", "eval/captions.json", "eval/tags.json"} <= names
    assert (out / "scst_training_log.json").read_text() == (tiny_model / "scst_training_log.json").read_text()
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "image-to-text" and card.data.license == "apache-2.0"
    measured = {(r.task_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert measured == {
        ("image-to-text", "BLEU-4 (beam 3)"): 0.2109,
        ("image-to-text", "CIDEr (beam 3)"): 0.5392,
        ("image-classification", "Tag precision@5"): 0.6122,
    }
    assert card.text.strip() == "# Tiny\n\nHand-written body."
    loops = eval_results({**CAPTIONS, "metrics": {"repeated_bigram_%": 0.0, "distinct_words": 273.0}})
    assert [(r.metric_type, r.metric_value) for r in loops] == [
        ("repeated_bigram_rate", 0.0),
        ("distinct_words", 273.0),
    ]
    assert OneNet.from_pretrained(out).model.generation_config.num_beams == 3


def test_a_bad_release_leaves_nothing_behind(tiny_model, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"task": "dance", "metrics": {}}))
    with pytest.raises(ReleaseError, match="not an `onenet evaluate --output` file"):
        write_release(tiny_model, tmp_path / "release", [bad], onnx=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    assert main(["release", str(tiny_model), "--out", str(tmp_path / "taken"), "--no-onnx"]) == 2
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "taken"]  # no temporary folder left


def test_push_dry_run_lists_files_and_sizes(tiny_model, tmp_path, capsys):
    out = write_release(tiny_model, tmp_path / "release", onnx=False)
    assert main(["push", str(out), "--repo-id", "org/tiny", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[-1]: int(line.split()[0].replace(",", "")) for line in lines[:-1]}
    assert listed["model.safetensors"] == (out / "model.safetensors").stat().st_size
    assert "README.md" in listed and lines[-1].endswith(f"bytes in {len(listed)} files would be uploaded to org/tiny")
    assert main(["push", str(tiny_model), "--repo-id", "org/tiny", "--dry-run"]) == 2  # no model card: not a release


def test_push_without_network_is_one_line(tiny_model, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    out = write_release(tiny_model, tmp_path / "release", onnx=False)
    with socket.socket() as free:  # a port nothing listens on: the connection is refused at once
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    capsys.readouterr()
    assert main(["push", str(out), "--repo-id", "org/tiny"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("onenet push: error: could not push to org/tiny") and len(error.splitlines()) == 1


def test_the_shipped_checkpoint_is_a_release_of_model_card_md():
    card = ModelCard.load(CHECKPOINT / "README.md")
    assert card.text.strip() == front_matter_free((ROOT / "model_card.md").read_text()).strip()
    measured = {(r.dataset_type, r.metric_name): r.metric_value for r in card.data.eval_results}
    for file in sorted((CHECKPOINT / "eval").glob("*.json")):
        result = json.loads(file.read_text())
        if result["task"] == "captions":
            for name, value in result["metrics"].items():
                assert measured[(result["dataset"], f"{name} (beam {result['beam_size']})")] == value
    assert any(name == "Tag precision@5" for _, name in measured)


def test_the_card_s_pictures_travel_with_it_and_a_missing_one_is_refused(tiny_model, tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "map.png").write_bytes(b"\x89PNG picture")
    body = tmp_path / "card.md"
    body.write_text("# Tiny\n\n![a map](figures/map.png) and ![web](https://example.org/x.png)\n")
    out = write_release(tiny_model, tmp_path / "release", [], body, "tiny", onnx=False)
    assert (out / "figures" / "map.png").read_bytes() == b"\x89PNG picture"
    body.write_text("# Tiny\n\n![gone](figures/gone.png)\n")
    with pytest.raises(ReleaseError, match="figures/gone.png"):
        write_release(tiny_model, tmp_path / "again", [], body, "tiny", onnx=False)
    body.write_text("# Tiny\n\n![outside](../secret.png)\n")
    with pytest.raises(ReleaseError, match="inside the card's folder"):
        write_release(tiny_model, tmp_path / "again", [], body, "tiny", onnx=False)
    assert not (tmp_path / "again").exists()


def test_the_shipped_checkpoint_has_every_picture_its_card_shows():
    from onenet_hf.publish.release import linked_images

    for link in linked_images((ROOT / "model_card.md").read_text()):
        assert (CHECKPOINT / link).read_bytes() == (ROOT / link).read_bytes()


@pytest.mark.slow
def test_a_release_calibrated_on_photos_ships_the_static_int8_image_encoder(tiny_model, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for photo in example_photos()[:2]:
        shutil.copy(photo, photos)
    out = write_release(tiny_model, tmp_path / "release", calibration_images=photos)
    manifest = json.loads((out / "onnx" / "manifest.json").read_text())
    assert set(manifest["graphs"]["image_encoder"]["files"]) == {"fp32", "int8-dynamic", "int8-static"}
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReleaseError, match="no images in"):
        write_release(tiny_model, tmp_path / "again", calibration_images=tmp_path / "empty")
    with pytest.raises(ReleaseError, match="which --no-onnx leaves out"):
        write_release(tiny_model, tmp_path / "again", onnx=False, calibration_images=photos)
    assert not (tmp_path / "again").exists()
