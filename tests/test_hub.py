"""Models by Hub id: resolved offline from a Hub cache laid out as huggingface_hub lays it out, sockets blocked."""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path

import pytest
from huggingface_hub import constants

from onenet_hf import OneNet, OneNetImageToTextPipeline
from onenet_hf.cli import main
from onenet_hf.data.example_photos import example_photos
from onenet_hf.errors import OneNetError
from onenet_hf.hub import ModelNotFoundError, resolve_model

from .hub_cache import add_snapshot

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "onenet-flickr8k"
REPO_ID = "onenet-hf/onenet-flickr8k"


def _release_copy(target: Path) -> Path:
    shutil.copytree(CHECKPOINT, target, ignore=shutil.ignore_patterns("onnx"))
    return target


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> dict:
    """The shipped checkpoint as `main` of REPO_ID, and a `v0.1` tag whose generation config decodes greedily."""
    root = tmp_path_factory.mktemp("hf")
    cache = root / "hub"
    main_commit = add_snapshot(cache, REPO_ID, _release_copy(root / "release"))
    greedy = _release_copy(root / "greedy")
    settings = json.loads((greedy / "generation_config.json").read_text())
    (greedy / "generation_config.json").write_text(json.dumps(settings | {"num_beams": 1}))
    old_commit = add_snapshot(cache, REPO_ID, greedy, refs=("v0.1",))
    return {"cache": cache, "main": main_commit, "v0.1": old_commit}


@pytest.fixture
def offline(hub_cache, monkeypatch):
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE pointing at the test cache; any socket connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache["cache"]))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache["cache"]))

    def blocked(*args, **kwargs):
        raise AssertionError(f"a test tried to open a network connection: {args}")

    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    return hub_cache


def test_a_hub_id_resolves_to_its_cached_snapshot(offline):
    folder = resolve_model(REPO_ID)
    assert folder == offline["cache"] / "models--onenet-hf--onenet-flickr8k" / "snapshots" / offline["main"]
    assert resolve_model(REPO_ID, revision="v0.1").name == offline["v0.1"]
    assert resolve_model(REPO_ID, revision=offline["v0.1"]).name == offline["v0.1"]
    assert resolve_model(CHECKPOINT) == CHECKPOINT  # a local folder passes through


def test_hub_id_and_local_folder_give_the_same_caption_and_revisions_differ(offline):
    photo = next(p for p in example_photos() if p.stem == "motorcycle_left")
    local = OneNet.from_pretrained(CHECKPOINT).caption(photo)[0]
    assert OneNet.from_pretrained(REPO_ID).caption(photo)[0] == local
    greedy = OneNet.from_pretrained(REPO_ID, revision="v0.1")
    assert greedy.model.generation_config.num_beams == 1
    assert greedy.caption(photo)[0] == OneNet.from_pretrained(CHECKPOINT).caption(photo, beam_size=1)[0]


@pytest.mark.parametrize("task", ["image-text-to-text", "image-to-text"])
def test_pipeline_and_generate_give_the_caption_of_onenet_caption(offline, task, monkeypatch):
    from transformers import pipeline

    # transformers 5.23 passes UserWarning as a %-argument in its "image-to-text" deprecation warning; the
    # logging error it causes is raised only under pytest's log capture when CI=1 makes transformers propagate.
    monkeypatch.setattr(logging, "raiseExceptions", False)
    photos = [str(p) for p in example_photos()[:3]]
    expected = [c.text for c in OneNet.from_pretrained(REPO_ID).caption(photos)]
    captioner = pipeline(task, model=REPO_ID, pipeline_class=OneNetImageToTextPipeline)
    assert [out[0]["generated_text"] for out in captioner(photos)] == expected
    assert captioner(photos[0]) == [{"generated_text": expected[0]}]
    expected_greedy = OneNet.from_pretrained(REPO_ID).caption(photos[0], beam_size=1)[0].text
    assert captioner(photos[0], num_beams=1) == [{"generated_text": expected_greedy}]


def test_transformers_own_pipelines_caption_by_hub_id_without_a_pipeline_class(offline):
    from transformers import AutoModel, pipeline

    photo = str(next(p for p in example_photos() if p.stem == "chelsea"))
    net = OneNet.from_pretrained(REPO_ID)
    expected = net.caption(photo)[0].text
    native = pipeline("image-text-to-text", model=REPO_ID)  # transformers' own pipeline class
    assert type(native).__name__ == "ImageTextToTextPipeline"
    assert native(images=photo, text="")[0]["generated_text"] == expected  # an empty prompt captions
    continued = native(images=photo, text="a photo of a")[0]["generated_text"]
    assert continued.startswith("a photo of a ") and len(continued.split()) > 4, continued
    with pytest.raises(OneNetError, match="lacks the prompt's 'zorblax'"):
        native(images=photo, text="a zorblax")
    remote = pipeline(model=REPO_ID, trust_remote_code=True)  # the release's custom_pipelines entry
    assert isinstance(remote, OneNetImageToTextPipeline)
    assert remote(photo) == [{"generated_text": expected}]
    assert type(AutoModel.from_pretrained(REPO_ID, trust_remote_code=True)).__name__ == "OneNetModel"


def test_a_prompt_is_a_caption_prefix_the_search_continues(offline):
    net = OneNet.from_pretrained(REPO_ID)
    photo = next(p for p in example_photos() if p.stem == "motorcycle_left")
    inputs = net.processor(images=[photo, photo], text=["a man", "a red"])
    texts = net.processor.batch_decode(net.model.generate(**inputs), skip_special_tokens=True)
    assert texts[0].startswith("a man ") and texts[1].startswith("a red "), texts
    empty = net.processor(images=[photo], text="")
    assert net.processor.batch_decode(net.model.generate(**empty), skip_special_tokens=True) == [
        net.caption(photo)[0].text
    ]


@pytest.mark.parametrize(
    ("model", "revision", "message"),
    [
        ("onenet-hf/no-such-model", None, "onenet-hf/no-such-model is not in the Hub cache"),
        (REPO_ID, "v9.9", "at revision 'v9.9' is not in the Hub cache"),
        ("not a repo id!", None, "is neither a model folder nor a Hub repo id"),
        ("./missing-folder", None, "./missing-folder: no such model folder"),
    ],
)
def test_models_that_cannot_be_had_are_one_clear_error(offline, model, revision, message, capsys):
    with pytest.raises(ModelNotFoundError, match=message):
        resolve_model(model, revision)
    args = ["caption", "--model", model, str(example_photos()[0])] + (["--revision", revision] if revision else [])
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_incomplete_or_foreign_folders_are_refused(tmp_path):
    partial = _release_copy(tmp_path / "partial")
    (partial / "tokenizer.json").unlink()
    with pytest.raises(ModelNotFoundError, match="not a complete OneNet model: missing tokenizer.json"):
        resolve_model(partial)
    foreign = _release_copy(tmp_path / "foreign")
    (foreign / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelNotFoundError, match="not a OneNet model \\(config.json says model_type 'bert'\\)"):
        resolve_model(foreign)
    with pytest.raises(ModelNotFoundError, match="--revision applies to Hub repo ids"):
        resolve_model(CHECKPOINT, revision="main")


@pytest.mark.slow
def test_onnx_backend_from_a_hub_id(hub_cache, tmp_path_factory, monkeypatch):
    pytest.importorskip("onnxruntime")
    from onenet_hf.onnx.export import export_onnx

    release = _release_copy(tmp_path_factory.mktemp("onnx-release") / "release")
    export_onnx(release, release / "onnx", int8_dynamic=False)
    add_snapshot(hub_cache["cache"], "onenet-hf/with-onnx", release)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache["cache"]))
    photo = next(p for p in example_photos() if p.stem == "astronaut")
    onnx = OneNet.from_pretrained("onenet-hf/with-onnx", backend="onnx")
    assert onnx.caption(photo)[0].text == OneNet.from_pretrained(CHECKPOINT).caption(photo)[0].text
    with pytest.raises(OneNetError, match="no ONNX export"):
        OneNet.from_pretrained(REPO_ID, backend="onnx")  # this repo has no onnx/


def _truncate_weights(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:1000])


def _break_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").write_text('{"model": ', encoding="utf-8")


def _negative_size(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden_size": -5}), encoding="utf-8")


# each damage, and whether `onenet export` reads the damaged file (it reads the weights and config only)
@pytest.mark.parametrize(
    "damage, export_reads_it",
    [(_truncate_weights, True), (_break_tokenizer, False), (_negative_size, True)],
    ids=["truncated weights", "tokenizer not JSON", "negative size"],
)
def test_a_damaged_checkpoint_is_one_error_naming_it(tiny_net, tmp_path, damage, export_reads_it, capsys):
    folder = tmp_path / "model"
    tiny_net.save_pretrained(folder)
    damage(folder)
    with pytest.raises(ModelNotFoundError, match="cannot be loaded, a file of it is damaged .*save the model again"):
        OneNet.from_pretrained(folder)
    photo = str(example_photos()[0])
    assert main(["caption", "--model", str(folder), photo]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("onenet caption: error: ")
    if export_reads_it:
        assert main(["export", str(folder), "--out", str(tmp_path / "onnx")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "a file of it is damaged" in err.strip().splitlines()[-1]
