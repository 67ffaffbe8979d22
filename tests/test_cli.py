"""The `onenet` command line: every command through `main`, the installed console script, and the flags that
`train` and `train-heads` make from their arguments dataclasses.

Tests that need a trained model (the session's shapes fixtures) are marked slow; the flag tests are quick.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from onenet_hf import OneNet
from onenet_hf.cli import add_dataclass_arguments, build_parser, dataclass_from, main
from onenet_hf.data.example_photos import example_photos
from onenet_hf.training.captions import LOG_FILE, CaptionTrainingArguments
from onenet_hf.training.heads import HEADS_LOG_FILE, HeadTrainingArguments
from onenet_hf.training.scst import SCSTArguments

from .conftest import SMALL

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "onenet-flickr8k"
slow = pytest.mark.slow


@slow
def test_caption_prints_one_line_per_image_in_order_and_reports_bad_ones(shapes_model, shapes_dir, tmp_path, capsys):
    images = sorted((shapes_dir / "images").glob("dev_*.jpg"))[:3]
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    paths = [
        str(images[0]),
        str(tmp_path / "broken.jpg"),
        str(images[1]),
        str(tmp_path / "missing.png"),
        str(images[2]),
    ]
    assert main(["caption", "--model", str(shapes_model), "--beam-size", "2", *paths]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in images]
    assert all(line.split("\t")[1].strip() for line in lines)
    assert "broken.jpg: not an image" in err and "missing.png: no such file" in err


@slow
def test_evaluate_writes_json_and_table(shapes_model, shapes_dir, feature_cache, tmp_path, capsys, monkeypatch):
    output = tmp_path / "results.json"
    args = ["evaluate", "--model", str(shapes_model), "--data-dir", str(shapes_dir), "--split", "dev"]
    assert main([*args, "--cache-dir", feature_cache, "--beam-size", "2", "--output", str(output)]) == 0
    table = capsys.readouterr().out
    results = json.loads(output.read_text())
    assert results["images"] == 12 and results["beam_size"] == 2 and results["no_repeat_ngram_size"] == 2
    scores = {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    assert set(results["metrics"]) == scores | {"repeated_bigram_%", "distinct_words"}
    assert results["metrics"]["repeated_bigram_%"] == 0.0  # blocked by the default generation config
    assert results["metrics"]["distinct_words"] >= 2  # a colour and a shape at least
    assert results["metrics"]["CIDEr"] > 1.0  # the shapes model names colour and shape of held-out images
    assert re.search(rf"^CIDEr +{results['metrics']['CIDEr']:.4f}$", table, re.MULTILINE)
    assert results["imagenet_steering"] == 0.0
    steered, weights = tmp_path / "steered.json", []

    def spy(model, tokenizer, pooled, weight):  # the steering reaches beam search, as a (images, vocab) bias
        weights.append(weight)
        return torch.zeros(len(pooled), len(tokenizer))

    monkeypatch.setattr("onenet_hf.evaluation.captions.imagenet_token_bias", spy)
    assert main([*args, "--cache-dir", feature_cache, "--imagenet-steering", "1.5", "--output", str(steered)]) == 0
    assert json.loads(steered.read_text())["imagenet_steering"] == 1.5 and weights == [1.5]
    assert main([*args, "--cache-dir", feature_cache, "--imagenet-steering", "-1"]) == 2
    assert "imagenet_steering must be a number from 0 (off) to 100" in capsys.readouterr().err


def _installed_onenet(*args: str) -> subprocess.CompletedProcess:
    """Run the `onenet` console script on PATH (the installed entry point), with this checkout first on
    PYTHONPATH so that the script runs the code under test even where the install points at another checkout."""
    script = shutil.which("onenet")
    if script is None:
        pytest.skip("the `onenet` console script is not on PATH (install the package: pip install -e .)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([script, *args], capture_output=True, text=True, env=env, timeout=300)


@slow
def test_console_script_is_installed_and_explains_usage(shapes_model, shapes_dir, tmp_path):
    usage = _installed_onenet("--help")
    assert usage.returncode == 0, usage.stderr
    assert all(command in usage.stdout for command in ("train-heads", "train-scst", "caption", "release", "export"))
    nothing = _installed_onenet("caption")
    assert nothing.returncode == 2 and nothing.stderr == "onenet caption: give image paths, or --example-photos\n"
    image = sorted((shapes_dir / "images").glob("dev_*.jpg"))[0]
    expected = OneNet.from_pretrained(shapes_model).caption(image, beam_size=2)[0].text
    missing = tmp_path / "missing.png"
    result = _installed_onenet("caption", "--model", str(shapes_model), "--beam-size", "2", str(image), str(missing))
    assert result.returncode == 1 and result.stdout == f"{image}\t{expected}\n", result.stderr
    assert "missing.png: no such file" in result.stderr and "Traceback" not in result.stderr


@slow
def test_word_commands_print_scored_words(shapes_model_with_heads, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    assert main(["analogy", "man", "king", "woman", "--space", "glove", "-k", "2", *model]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("queen\t")
    assert main(["similar-words", "red", "--space", "learned", "-k", "3", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@slow
def test_unknown_word_is_a_one_line_error_not_a_traceback(shapes_model_with_heads, capsys):
    assert main(["similar-words", "qwzx", "--space", "learned", "--model", str(shapes_model_with_heads)]) == 2
    err = capsys.readouterr().err
    assert "onenet similar-words: error: 'qwzx' is not in the learned caption vocabulary" in err
    assert "Traceback" not in err


@slow
def test_tag_index_similar_images_and_search(shapes_model_with_heads, shapes_dir, tmp_path, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    images = sorted((shapes_dir / "images").glob("dev_*.jpg"))
    assert main(["tag", str(images[0]), "-k", "3", *model]) == 0
    assert "\ttags: " in capsys.readouterr().out
    count = len(list((shapes_dir / "images").glob("*.jpg")))
    assert main(["index", str(shapes_dir / "images"), "--out", str(tmp_path / "index"), *model]) == 0
    printed = capsys.readouterr()
    assert f"indexed {count} images into {tmp_path / 'index'} ({count} embedded, 0 reused, 0 dropped" in printed.out
    assert "embedding new or changed images with PyTorch" in printed.err  # this test model has no ONNX export
    assert main(["index", str(shapes_dir / "images"), "--out", str(tmp_path / "index"), *model]) == 0
    assert (
        f"indexed {count} images into {tmp_path / 'index'} (0 embedded, 0 reused, 0 dropped" in capsys.readouterr().out
    )
    assert main(["similar-images", str(images[0]), "--index", str(tmp_path / "index"), "-k", "2", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["search", "a", "red", "circle", "--index", str(tmp_path / "index"), "-k", "2", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["search", "   ", "--index", str(tmp_path / "index"), *model]) == 2
    assert "the text is empty" in capsys.readouterr().err
    assert main(["search", "!!! ?", "--index", str(tmp_path / "index"), *model]) == 2
    assert "'!!! ?' has no words" in capsys.readouterr().err
    assert main(["search", "red", "--index", str(tmp_path / "missing"), *model]) == 2
    assert "no gallery index" in capsys.readouterr().err


@slow
def test_evaluate_tags_and_retrieval(shapes_model_with_heads, shapes_dir, feature_cache, tmp_path, capsys):
    args = [
        "evaluate",
        "--model",
        str(shapes_model_with_heads),
        "--data-dir",
        str(shapes_dir),
        "--cache-dir",
        feature_cache,
    ]
    assert main([*args, "--task", "tags", "--caption-samples", "20", "--output", str(tmp_path / "tags.json")]) == 0
    result = json.loads((tmp_path / "tags.json").read_text())
    assert result["caption_samples"] == 20 and result["caption_weight"] == 2.0 and result["imagenet_weight"] == 0.5
    assert 0 <= result["metrics"]["tag_precision@5"] <= 1
    assert 0 <= result["metrics"]["share_outside_caption_vocabulary"] <= 1
    assert main([*args, "--task", "tags", "--caption-samples", "-1"]) == 2
    assert "caption_samples must be an integer from 0 to 1,000" in capsys.readouterr().err
    assert main([*args, "--task", "tags", "--caption-weight", "-0.5"]) == 2
    assert "caption_weight must be a number from 0 (off) to 100" in capsys.readouterr().err
    assert main([*args, "--task", "tags", "--imagenet-weight", "nan"]) == 2
    assert "imagenet_weight must be a number from 0 (off) to 100, got nan" in capsys.readouterr().err
    assert (
        main([*args, "--task", "retrieval", "--methods", "retrieval,reranked", "--output", str(tmp_path / "r.json")])
        == 0
    )
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert set(metrics) == {"retrieval", "reranked"} and metrics["reranked"]["text_to_image_R@10"] > 0


@slow
def test_evaluate_analogy_prints_sections_and_total(shapes_model_with_heads, tmp_path, capsys):
    questions = tmp_path / "questions.txt"
    questions.write_text(": family\nman king woman queen\nboy brother girl sister\n: made-up\nqwzx a b c\n")
    args = ["evaluate", "--task", "analogy", "--model", str(shapes_model_with_heads), "--questions", str(questions)]
    assert main([*args, "--analogy-methods", "3cosadd", "--output", str(tmp_path / "a.json")]) == 0
    out = capsys.readouterr().out
    assert "3cosadd  family" in out and "3cosadd  total" in out
    total = json.loads((tmp_path / "a.json").read_text())["metrics"]["3cosadd"]["total"]
    assert total["questions"] == 2 and total["skipped"] == 1 and total["correct"] >= 1


def _one_line_error(err: str, command: str) -> str:
    """The one error line on stderr (progress bars aside)."""
    lines = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith(f"onenet {command}: error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [
        ["dream", "PHOTO"],
        ["style", "PHOTO", "PHOTO"],
        ["imagine", "a dog"],
        ["visualize", "--class", "1"],
        ["explain", "PHOTO"],
        ["layers", "PHOTO"],
        ["map", "--index", "INDEX"],
    ],
)
def test_an_out_that_cannot_be_written_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys, command):
    monkeypatch.setattr("onenet_hf.cli._load", lambda args: pytest.fail("the model was loaded"))
    photo = str(example_photos()[0])
    command = [photo if part == "PHOTO" else str(tmp_path) if part == "INDEX" else part for part in command]
    takes_folder = command[0] in ("explain", "layers")
    (tmp_path / "a-file").write_text("keep me")
    os.mkfifo(tmp_path / "a-fifo.png")
    (tmp_path / "a-folder.png").mkdir()
    outs = [tmp_path / "a-file" / "inside"] if takes_folder else [tmp_path / "a-folder.png", tmp_path / "a-fifo.png"]
    if Path("/proc/self").is_dir():
        outs.append(Path("/proc/new.png"))
    for out in outs:
        assert main([*command, "--out", str(out)]) == 2
        line = _one_line_error(capsys.readouterr().err, command[0])
        assert str(out) in line and any(p in line for p in ("folder", "regular file", "cannot write in")), line
    assert (tmp_path / "a-file").read_text() == "keep me"


@slow
def test_index_refuses_an_out_folder_that_is_not_its_own_and_deletes_nothing(shapes_model_with_heads, tmp_path, capsys):
    folder = tmp_path / "X"
    folder.mkdir()
    for photo in example_photos()[:2]:
        shutil.copy(photo, folder)
    (folder / "notes.txt").write_text("my notes")
    (tmp_path / "a-file").write_text("keep me")
    before = sorted(p.name for p in folder.iterdir())
    model = ["--model", str(shapes_model_with_heads)]
    assert main(["index", str(folder), "--out", str(folder), *model]) == 2
    assert "is or contains the images to index" in _one_line_error(capsys.readouterr().err, "index")
    assert main(["index", str(folder), "--out", str(tmp_path / "a-file"), *model]) == 2
    assert "is a file, not a folder" in _one_line_error(capsys.readouterr().err, "index")
    assert sorted(p.name for p in folder.iterdir()) == before and (tmp_path / "a-file").read_text() == "keep me"


@slow
def test_index_rebuilds_a_corrupt_index_of_its_own(shapes_model_with_heads, shapes_dir, tmp_path, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    images, out = str(shapes_dir / "images"), str(tmp_path / "index")
    assert main(["index", images, "--out", out, *model]) == 0
    (tmp_path / "index" / "index.sqlite").write_bytes(b"null" * 1000)
    assert main(["search", "red", "--index", out, *model]) == 2
    assert "corrupt gallery index" in _one_line_error(capsys.readouterr().err, "search")
    assert main(["index", images, "--out", out, *model]) == 0  # no --rebuild needed
    assert main(["search", "red", "--index", out, "-k", "2", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # "indexed ..." and two results


@slow
def test_file_names_with_control_characters_stay_on_one_line(shapes_model_with_heads, shapes_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    source = sorted((shapes_dir / "images").glob("dev_*.jpg"))
    shutil.copy(source[0], folder / "two\nlines.jpg")
    shutil.copy(source[1], folder / "tab\there.jpg")
    model = ["--model", str(shapes_model_with_heads)]
    assert main(["caption", str(folder / "two\nlines.jpg"), str(folder / "tab\there.jpg"), *model]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(folder / "two\\nlines.jpg"), str(folder / "tab\\there.jpg")]
    assert main(["index", str(folder), "--out", str(tmp_path / "index"), *model]) == 0
    capsys.readouterr()
    assert main(["search", "a", "red", "circle", "--index", str(tmp_path / "index"), "-k", "2", *model]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.count("\t") == 1 for line in lines)


@slow
def test_caps_and_long_input_are_short_one_line_errors(shapes_model_with_heads, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    assert main(["caption", "--example-photos", "--beam-size", "100000", *model]) == 2
    line = _one_line_error(capsys.readouterr().err, "caption")
    assert "beam_size must be an integer from 1 to 64, got 100000" in line
    assert main(["caption", "--example-photos", "--no-repeat-ngram-size", "-1", "--model", "no/such-model"]) == 2
    line = _one_line_error(capsys.readouterr().err, "caption")  # checked before the model is looked for
    assert "no_repeat_ngram_size must be an integer from 0 (off) to 24, got -1" in line
    assert main(["tag", "--example-photos", "-k", "5000", *model]) == 2
    assert "k must be an integer from 1 to 1,000, got 5000" in _one_line_error(capsys.readouterr().err, "tag")
    assert main(["similar-words", "q" * 10_000, "--space", "glove", *model]) == 2
    line = _one_line_error(capsys.readouterr().err, "similar-words")
    assert f"{'q' * 40!r}… is not in the GloVe vocabulary" in line and len(line) < 150


# `train`, `train-heads`, `release` and `export` on the tiny shapes set and models.


def _flag(name: str) -> str:
    """The command-line flag of an arguments field: `learning_rate` is `--learning-rate`."""
    return "--" + name.replace("_", "-")


def _flags(options: dict) -> list[str]:
    return [text for name, value in options.items() for text in (_flag(name), str(value))]


def _dev_image(shapes_dir: Path) -> Path:
    return sorted((shapes_dir / "images").glob("dev_*.jpg"))[0]


@slow
def test_train_writes_a_model_that_loads_and_captions(shapes_dir, feature_cache, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["train", "--data-dir", str(shapes_dir), "--output-dir", str(out), "--cache-dir", feature_cache]
    assert main([*args, "--epochs", "1", *_flags(SMALL)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"best model written to {out}"
    net = OneNet.from_pretrained(out)
    config = net.model.config
    assert (config.hidden_size, config.word_embedding_size, config.decoder_hidden_size) == (64, 32, 64)  # the flags
    assert [row["epoch"] for row in json.loads((out / LOG_FILE).read_text())] == [1]
    vocabulary = {
        word for line in (shapes_dir / "Flickr8k.token.txt").read_text().splitlines() for word in line.split()
    }
    caption = net.caption(_dev_image(shapes_dir), beam_size=2)[0].text
    assert caption.split() and set(caption.split()) <= vocabulary  # words it learned from the shapes captions
    assert main([*args, "--epochs", "2", *_flags(SMALL)]) == 2  # another schedule into a started folder
    assert "was written with other training arguments" in _one_line_error(capsys.readouterr().err, "train")
    assert main(["train", "--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "other")]) == 2
    assert "missing Flickr8k caption file" in _one_line_error(capsys.readouterr().err, "train")


@slow
def test_train_heads_writes_a_model_that_tags_and_captions_as_before(
    shapes_model, shapes_dir, feature_cache, tmp_path, capsys
):
    out = tmp_path / "heads"
    args = ["train-heads", "--model-dir", str(shapes_model), "--data-dir", str(shapes_dir), "--output-dir", str(out)]
    schedule = ["--tag-epochs", "1", "--retrieval-epochs", "1", "--retrieval-batch-size", "64"]
    assert main([*args, "--cache-dir", feature_cache, *schedule]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"model with trained heads written to {out}"
    assert [(row["head"], row["epoch"]) for row in json.loads((out / HEADS_LOG_FILE).read_text())] == [
        ("tag", 1),
        ("retrieval", 1),
    ]
    image = _dev_image(shapes_dir)
    net = OneNet.from_pretrained(out)
    before = OneNet.from_pretrained(shapes_model).caption(image, beam_size=2)[0]
    assert net.caption(image, beam_size=2)[0] == before  # the caption network is frozen
    tags = net.tag(image, k=3, caption_samples=0)[0]
    assert len(tags.words) == 3 and len({tag.word for tag in tags.words}) == 3
    assert main([*args, "--heads", "tags"]) == 2
    assert "name one or more of tag, retrieval" in _one_line_error(capsys.readouterr().err, "train-heads")


@slow
def test_train_heads_on_a_missing_model_is_a_one_line_error(shapes_dir, tmp_path, capsys):
    args = ["train-heads", "--model-dir", str(tmp_path / "nowhere"), "--data-dir", str(shapes_dir)]
    assert main([*args, "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 2
    assert "nowhere: no such model folder" in _one_line_error(capsys.readouterr().err, "train-heads")
    assert not (tmp_path / "out").exists()  # nothing written before the model was found


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--baseline", "best"], "--baseline 'best': choose one of mean, greedy"), ([], "nowhere: no such model folder")],
)
def test_train_scst_bad_input_is_a_one_line_error_before_any_work(tmp_path, capsys, flags, message):
    args = ["train-scst", "--model-dir", str(tmp_path / "nowhere"), "--data-dir", str(tmp_path)]
    assert main([*args, "--output-dir", str(tmp_path / "out"), *flags]) == 2
    assert message in _one_line_error(capsys.readouterr().err, "train-scst")
    assert not (tmp_path / "out").exists()


@slow
def test_release_writes_the_card_weights_logs_and_evaluations(shapes_model_with_heads, shapes_dir, tmp_path, capsys):
    evaluation = tmp_path / "captions.json"
    result = {"model": "shapes", "task": "captions", "dataset": "shapes", "split": "dev", "images": 12, "beam_size": 2}
    evaluation.write_text(json.dumps(result | {"metrics": {"BLEU-4": 0.5, "CIDEr": 1.25}}))
    body = tmp_path / "card.md"
    body.write_text("---\nlicense: mit\n---\n\n# Shapes\n\nA test model.\n")
    out = tmp_path / "release"
    args = ["release", str(shapes_model_with_heads), "--out", str(out), "--eval", str(evaluation)]
    assert main([*args, "--card", str(body), "--model-name", "shapes-test", "--no-onnx"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"released {shapes_model_with_heads} to {out}"
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    weights = {"README.md", "config.json", "model.safetensors", "generation_config.json", "preprocessor_config.json"}
    assert weights | {"tokenizer.json", "heads_training_log.json", "eval/captions.json"} <= names
    assert not any(name.startswith("onnx/") or name.endswith(".pt") for name in names)  # --no-onnx; no resume state
    assert (out / HEADS_LOG_FILE).read_text() == (shapes_model_with_heads / HEADS_LOG_FILE).read_text()
    assert (out / LOG_FILE).is_file() == (shapes_model_with_heads / LOG_FILE).is_file()  # where the folder has it
    assert json.loads((out / "eval" / "captions.json").read_text()) == json.loads(evaluation.read_text())
    card = ModelCard.load(out / "README.md")
    assert card.data.model_name == "shapes-test" and card.text.strip() == "# Shapes\n\nA test model."
    measured = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert measured == {"BLEU-4 (beam 2)": 0.5, "CIDEr (beam 2)": 1.25}
    image = _dev_image(shapes_dir)
    released = OneNet.from_pretrained(out).caption(image, beam_size=2)[0].text
    assert released == OneNet.from_pretrained(shapes_model_with_heads).caption(image, beam_size=2)[0].text
    assert main(["release", str(shapes_model_with_heads), "--out", str(out), "--no-onnx"]) == 2  # taken
    assert f"{out} already exists" in _one_line_error(capsys.readouterr().err, "release")
    evaluation.write_text(json.dumps({"task": "dance", "metrics": {}}))
    assert main([*args, "--out", str(tmp_path / "again"), "--no-onnx"]) == 2
    assert "not an `onenet evaluate --output` file" in _one_line_error(capsys.readouterr().err, "release")
    assert main(["release", str(tmp_path / "nowhere"), "--out", str(tmp_path / "again"), "--no-onnx"]) == 2
    assert "no such model folder" in _one_line_error(capsys.readouterr().err, "release")
    assert not (tmp_path / "again").exists()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@slow
def test_export_writes_onnx_graphs_that_caption_as_pytorch_does(shapes_model, shapes_dir, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onenet_hf.onnx.backend import MANIFEST_FILE

    model = tmp_path / "model"  # a copy: by default the graphs go into the model folder, which other tests share
    shutil.copytree(shapes_model, model, ignore=shutil.ignore_patterns("*.pt"))
    assert main(["export", str(model), "--no-int8-dynamic"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert json.loads((model / "onnx" / MANIFEST_FILE).read_text()) == manifest
    assert set(manifest["graphs"]) == {"image_encoder", "decoder_init", "decoder_step"}
    for graph in manifest["graphs"].values():
        assert set(graph["files"]) == {"fp32"}  # --no-int8-dynamic
        assert _sha256(model / "onnx" / graph["files"]["fp32"]["path"]) == graph["files"]["fp32"]["sha256"]
    images = sorted((shapes_dir / "images").glob("dev_*.jpg"))[:3]
    expected = [c.text for c in OneNet.from_pretrained(model).caption(images, beam_size=2)]
    assert [c.text for c in OneNet.from_pretrained(model, backend="onnx").caption(images, beam_size=2)] == expected
    assert main(["export", str(shapes_model), "--out", str(tmp_path / "int8")]) == 0
    files = json.loads(capsys.readouterr().out)["graphs"]["decoder_step"]["files"]
    assert set(files) == {"fp32", "int8-dynamic"} and (tmp_path / "int8" / files["int8-dynamic"]["path"]).is_file()
    assert not (shapes_model / "onnx").exists()


@slow
def test_export_of_a_folder_without_a_model_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--no-int8-dynamic"]) == 2
    assert "is not a complete OneNet model: missing" in _one_line_error(capsys.readouterr().err, "export")
    assert not (tmp_path / "empty" / "onnx").exists()  # nothing written before the model was found


# The flags of `train`, `train-heads` and `train-scst`, made from their arguments dataclasses.

REQUIRED = {
    CaptionTrainingArguments: {"data_dir", "output_dir"},
    HeadTrainingArguments: {"model_dir", "data_dir", "output_dir"},
    SCSTArguments: {"model_dir", "data_dir", "output_dir"},
}


def _parser(arguments: type) -> argparse.ArgumentParser:
    """A parser holding only the flags of `arguments`; each flag's help on its own line."""
    parser = argparse.ArgumentParser(
        prog="flags", formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=80, width=200)
    )
    add_dataclass_arguments(parser, arguments)
    return parser


def _required_flags(arguments: type, leave_out: str | None = None) -> list[str]:
    return [text for name in sorted(REQUIRED[arguments] - {leave_out}) for text in (_flag(name), f"/{name}")]


@pytest.mark.parametrize("arguments", list(REQUIRED), ids=lambda a: a.__name__)
def test_every_field_is_a_flag_whose_default_is_the_dataclass_default(arguments):
    fields = dataclasses.fields(arguments)
    assert {f.name for f in fields if f.default is dataclasses.MISSING} == REQUIRED[arguments]
    parsed = _parser(arguments).parse_args(_required_flags(arguments))
    assert set(vars(parsed)) == {f.name for f in fields}  # one flag per field, nothing else
    for field in fields:
        if field.name not in REQUIRED[arguments]:
            value = getattr(parsed, field.name)
            assert value == field.default and type(value) is type(field.default), field.name
    assert dataclass_from(arguments, parsed) == arguments(**{name: f"/{name}" for name in REQUIRED[arguments]})


@pytest.mark.parametrize("arguments", list(REQUIRED), ids=lambda a: a.__name__)
def test_flags_are_typed_as_their_defaults_and_every_value_reaches_the_dataclass(arguments, capsys):
    parser, required = _parser(arguments), _required_flags(arguments)
    kinds, given, expected = set(), [], {name: f"/{name}" for name in REQUIRED[arguments]}
    for field in dataclasses.fields(arguments):
        if field.name in REQUIRED[arguments]:
            continue
        kind = type(field.default)  # what the dataclass holds, whatever its annotation says
        kinds.add(kind)
        option = _flag(field.name)
        if kind is bool:
            assert getattr(parser.parse_args([*required, option]), field.name) is True
            assert getattr(parser.parse_args([*required, "--no-" + option[2:]]), field.name) is False
            given.append(option if not field.default else "--no-" + option[2:])
            expected[field.name] = not field.default
            continue
        if kind is int:
            text, value = str(field.default + 7), field.default + 7
        elif kind is float:
            text, value = repr(field.default + 0.25), field.default + 0.25
        else:  # str, and str | None
            text = value = f"{field.name} value"
        parsed = getattr(parser.parse_args([*required, option, text]), field.name)
        assert parsed == value and type(parsed) is type(value), field.name
        given += [option, text]
        expected[field.name] = value
        if kind in (int, float):
            with pytest.raises(SystemExit) as error:
                parser.parse_args([*required, option, "1.5x"])
            assert error.value.code == 2
            assert f"argument {option}: invalid {kind.__name__} value: '1.5x'" in capsys.readouterr().err
    assert {int, float, str} <= kinds  # every kind met (and bool where the dataclass has one)
    assert (bool in kinds) == (arguments is not HeadTrainingArguments)
    built = dataclass_from(arguments, parser.parse_args([*required, *given]))
    assert built == arguments(**expected) and built != arguments(**{name: f"/{name}" for name in REQUIRED[arguments]})


@pytest.mark.parametrize("arguments", list(REQUIRED), ids=lambda a: a.__name__)
def test_required_fields_are_required_flags(arguments, capsys):
    for name in REQUIRED[arguments]:
        with pytest.raises(SystemExit) as error:
            _parser(arguments).parse_args(_required_flags(arguments, leave_out=name))
        assert error.value.code == 2
        assert f"the following arguments are required: {_flag(name)}" in capsys.readouterr().err


@pytest.mark.parametrize("arguments", list(REQUIRED), ids=lambda a: a.__name__)
def test_help_shows_each_default(arguments):
    options = _parser(arguments).format_help().split("options:\n")[1].splitlines()
    for field in dataclasses.fields(arguments):
        line = next(
            line.strip()
            for line in options
            if line.strip().startswith((f"{_flag(field.name)} ", f"{_flag(field.name)},"))
        )
        if field.name in REQUIRED[arguments]:
            assert "default" not in line, line
        else:
            assert line.endswith(f"(default: {field.default})"), line


def test_the_commands_build_their_arguments_from_the_flags():
    args = build_parser().parse_args(
        ["train", "--data-dir", "d", "--output-dir", "o", "--epochs", "3", "--horizontal-flip"]
    )
    assert args.command == "train" and dataclass_from(CaptionTrainingArguments, args) == CaptionTrainingArguments(
        data_dir="d", output_dir="o", epochs=3, horizontal_flip=True
    )
    given = ["train-heads", "--model-dir", "m", "--data-dir", "d", "--output-dir", "o", "--heads", "tag"]
    args = build_parser().parse_args([*given, "--learning-rate", "0.5"])
    assert dataclass_from(HeadTrainingArguments, args) == HeadTrainingArguments(
        model_dir="m", data_dir="d", output_dir="o", heads="tag", learning_rate=0.5
    )


def test_index_defaults_to_the_fastest_encoder_and_ivfpq_and_its_help_says_so(capsys):
    """Galleries get the fastest exported image encoder and the ivfpq index unless told otherwise (issue 17)."""
    args = build_parser().parse_args(["index", "photos", "--out", "gallery"])
    assert (args.backend, args.onnx_variant, args.ann, args.engine) == ("auto", "fastest", "ivfpq", "local")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["index", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: auto)", "(default: fastest)", "(default: ivfpq)"):
        assert default in help_text


def test_index_refuses_a_bad_tree_count_before_loading_the_model(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(example_photos()[0], photos)
    missing_model = ["--model", str(tmp_path / "no-model")]  # never read: the options are checked first
    assert main(["index", str(photos), "--out", str(tmp_path / "gallery"), "--n-trees", "0", *missing_model]) == 2
    assert "n_trees (--n-trees) must be 1 to 1,000, got 0" in _one_line_error(capsys.readouterr().err, "index")
    assert not (tmp_path / "gallery").exists()


@pytest.mark.parametrize("value", ["2", "-0.5", "nan", "inf"])
def test_a_bad_imagenet_labels_threshold_is_one_line_before_the_model_is_looked_for(value, capsys):
    assert main(["caption", "--example-photos", "--imagenet-labels", value, "--model", "no/such-model"]) == 2
    line = _one_line_error(capsys.readouterr().err, "caption")
    assert f"imagenet_labels must be a chance from 0 (off) to 1, got {value}" in line


# `onenet --help`, `onenet CMD --help` and the errors that need no model answer without importing torch or
# transformers (issue 42): a fresh Python runs each through `main` and reports what it imported after each.

_RUN_IN_FRESH_PYTHON = """
import contextlib, io, json, sys
from onenet_hf import cli
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as error:
            code = error.code
    heavy = [name for name in ("torch", "transformers") if name in sys.modules]
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue(), "imported": heavy})
print(json.dumps(results))
"""


def _main_in_fresh_python(*argvs: list[str]) -> list[dict]:
    """`main(argv)` for each argv, in order, in one new interpreter running this checkout: exit code, stdout,
    stderr, and which of torch and transformers were imported by then."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    command = [sys.executable, "-c", _RUN_IN_FRESH_PYTHON, json.dumps(argvs)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_help_of_every_command_imports_neither_torch_nor_transformers():
    from onenet_hf.cli import COMMANDS

    argvs = [["--help"]] + [[command, "--help"] for command in COMMANDS]
    for argv, result in zip(argvs, _main_in_fresh_python(*argvs), strict=True):
        assert result["code"] == 0 and result["err"] == "", (argv, result)
        assert result["out"].startswith(f"usage: onenet {argv[0] if len(argv) == 2 else ''}".rstrip()), argv
        assert result["imported"] == [], f"onenet {' '.join(argv)} imported {result['imported']}"


def test_errors_that_need_no_model_are_one_line_without_torch(tmp_path):
    missing_model, missing = str(tmp_path / "no-model"), str(tmp_path / "missing")
    (tmp_path / "photos").mkdir()
    cases = {  # argv -> what the one error line says
        ("caption", "x.jpg", "--model", missing_model): f"{missing_model}: no such model folder",
        ("caption", "--beam-size", "0", "x.jpg"): "beam_size must be an integer from 1 to 64, got 0",
        ("explain", "x.jpg", "--out", str(tmp_path / "e"), "--beam-size", "65"): "from 1 to 64, got 65",
        ("index", missing, "--out", str(tmp_path / "gallery")): f"image folder not found: {missing}",
        ("index", str(tmp_path / "photos"), "--out", str(tmp_path / "photos")): "is or contains the images",
        ("search", "a", "dog", "--index", missing): f"no gallery index at {missing} (index.sqlite missing)",
        ("neuron", "--unit", "1", "--index", missing): f"no gallery index at {missing}",
        ("layers", "x.jpg", "--out", str(tmp_path / "l"), "--channels", "0"): "channels must be an integer from 1",
        ("evaluate", "--data-dir", str(tmp_path), "--model", missing_model): "no such model folder",
        ("evaluate", "--task", "tags", "--data-dir", str(tmp_path), "--caption-samples", "-1"): "caption_samples",
        ("evaluate", "--task", "captions", "--data-dir", str(tmp_path), "--beam-size", "65"): "from 1 to 64, got 65",
        ("dream", "x.jpg", "--steps", "0", "--out", str(tmp_path / "d.png")): "steps must be an integer from 1",
        ("dream", "x.jpg", "--strength", "nan", "--out", str(tmp_path / "d.png")): "strength must be a number from 0",
        ("dream", "x.jpg", "--size", "0", "--out", str(tmp_path / "d.png")): "image size must be an integer from 64",
        ("style", "x.jpg", "y.jpg", "--steps", "-1", "--out", str(tmp_path / "s.png")): "steps must be an integer",
        ("style", "x.jpg", "y.jpg", "--style-weight", "-1", "--out", str(tmp_path / "s.png")): "style weight must",
        ("visualize", "--class", "1", "--images", "0", "--out", str(tmp_path / "v.png")): "images must be an integer",
        ("imagine", "a dog", "--size", "1", "--out", str(tmp_path / "i.png")): "image size must be an integer from 64",
        ("imagine", "a dog", "--seed", "-1", "--out", str(tmp_path / "i.png")): "seed must be an integer",
        ("imagine", "a dog", "--size", "1024", "--out", str(tmp_path / "i.png")): "use size 564 or less",
        ("visualize", "--class", "1", "--images", "8", "--out", str(tmp_path / "v.png")): "use size 199 or less",
        ("tag", "x.jpg", "--caption-samples", "1001"): "caption_samples must be an integer from 0 to 1,000, got 1001",
        ("similar-words", "dog", "-k", "-1"): "k must be an integer from 1 to 1,000, got -1",
        ("analogy", "man", "king", "woman", "-k", "0"): "k must be an integer from 1 to 1,000, got 0",
        ("search", "a", "dog", "--index", missing, "-k", "1001"): "k must be an integer from 1 to 1,000",
        ("imagine", "a" * 1001, "--out", str(tmp_path / "i.png")): "the sentence has 1,001 characters",
        ("search", "a" * 1001, "--index", missing): "the text has 1,001 characters",
        ("export", str(CHECKPOINT), "--out", str(tmp_path / "a_file")): "a_file is a file, not a folder",
        ("release", str(CHECKPOINT), "--out", str(tmp_path / "photos_full")): "photos_full already exists",
        ("build-space", "--out", str(tmp_path / "photos_full")): "photos_full already exists",
    }
    (tmp_path / "a_file").write_text("")
    (tmp_path / "photos_full").mkdir()
    (tmp_path / "photos_full" / "x.jpg").write_text("")
    for (argv, message), result in zip(cases.items(), _main_in_fresh_python(*cases), strict=True):
        assert result["code"] == 2 and result["out"] == "", (argv, result)
        assert result["err"].count("\n") == 1 and result["err"].startswith(f"onenet {argv[0]}: error: "), result
        assert message in result["err"], (argv, result["err"])
        assert result["imported"] == [], f"onenet {' '.join(argv)} imported {result['imported']}"
    assert not (tmp_path / "gallery").exists() and not (tmp_path / "e").exists()


@pytest.mark.parametrize("command", ["caption", "tag"])
def test_the_old_sample_photos_flag_still_works_for_one_release_and_says_what_replaces_it(command, capsys):
    args = build_parser().parse_args([command, "--sample-photos"])
    assert args.example_photos is True
    assert capsys.readouterr().err == "onenet: --sample-photos is deprecated, use --example-photos\n"
    assert build_parser().parse_args([command, "--example-photos"]).example_photos is True
    assert capsys.readouterr().err == ""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    help_text = capsys.readouterr().out
    assert "--example-photos" in help_text and "--sample-photos" not in help_text  # no longer offered
