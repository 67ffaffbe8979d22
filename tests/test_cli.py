"""The `onenet` console script: caption and evaluate on a small trained model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from onenet_hf.cli import main
from onenet_hf.samples import sample_photos

pytestmark = pytest.mark.slow


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


def test_evaluate_writes_json_and_table(shapes_model, shapes_dir, feature_cache, tmp_path, capsys):
    output = tmp_path / "results.json"
    args = ["evaluate", "--model", str(shapes_model), "--data-dir", str(shapes_dir), "--split", "dev"]
    assert main([*args, "--cache-dir", feature_cache, "--beam-size", "2", "--output", str(output)]) == 0
    table = capsys.readouterr().out
    results = json.loads(output.read_text())
    assert results["images"] == 12 and results["beam_size"] == 2
    assert set(results["metrics"]) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr"}
    assert results["metrics"]["CIDEr"] > 1.0  # the shapes model names colour and shape of held-out images
    assert f"CIDEr    {results['metrics']['CIDEr']:.4f}" in table


def test_console_script_is_installed_and_explains_usage():
    result = subprocess.run([sys.executable, "-m", "onenet_hf.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "caption" in result.stdout
    result = subprocess.run([sys.executable, "-m", "onenet_hf.cli", "caption"], capture_output=True, text=True)
    assert result.returncode == 2 and "give image paths" in result.stderr


def test_word_commands_print_scored_words(shapes_model_with_heads, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    assert main(["analogy", "man", "king", "woman", "--space", "glove", "-k", "2", *model]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("queen\t")
    assert main(["similar-words", "red", "--space", "learned", "-k", "3", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_unknown_word_is_a_one_line_error_not_a_traceback(shapes_model_with_heads, capsys):
    assert main(["similar-words", "qwzx", "--space", "learned", "--model", str(shapes_model_with_heads)]) == 2
    err = capsys.readouterr().err
    assert "onenet similar-words: error: 'qwzx' is not in the learned caption vocabulary" in err
    assert "Traceback" not in err


def test_tag_index_similar_images_and_search(shapes_model_with_heads, shapes_dir, tmp_path, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    images = sorted((shapes_dir / "images").glob("dev_*.jpg"))
    assert main(["tag", str(images[0]), "-k", "3", *model]) == 0
    assert "\ttags: " in capsys.readouterr().out
    assert main(["index", str(shapes_dir / "images"), "--out", str(tmp_path / "index"), *model]) == 0
    assert f"indexed {len(list((shapes_dir / 'images').glob('*.jpg')))} images" in capsys.readouterr().out
    assert main(["similar-images", str(images[0]), "--index", str(tmp_path / "index"), "-k", "2", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["search", "a", "red", "circle", "--index", str(tmp_path / "index"), "-k", "2", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["search", "   ", "--index", str(tmp_path / "index"), *model]) == 2
    assert "the description is empty" in capsys.readouterr().err
    assert main(["search", "red", "--index", str(tmp_path / "missing"), *model]) == 2
    assert "no gallery index" in capsys.readouterr().err


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
    assert result["caption_samples"] == 20 and result["caption_weight"] == 2.0
    assert 0 <= result["metrics"]["tag_precision@5"] <= 1
    assert 0 <= result["metrics"]["share_outside_caption_vocabulary"] <= 1
    assert main([*args, "--task", "tags", "--caption-samples", "-1"]) == 2
    assert "caption_samples must be 0 to 1000" in capsys.readouterr().err
    assert main([*args, "--task", "tags", "--caption-weight", "-0.5"]) == 2
    assert "caption_weight must be >= 0" in capsys.readouterr().err
    assert main([*args, "--task", "retrieval", "--methods", "joint,embed", "--output", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert set(metrics) == {"joint", "embed"} and metrics["embed"]["text_to_image_R@10"] > 0


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


def test_index_refuses_an_out_folder_that_is_not_its_own_and_deletes_nothing(shapes_model_with_heads, tmp_path, capsys):
    folder = tmp_path / "X"
    folder.mkdir()
    for photo in sample_photos()[:2]:
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


def test_index_rebuilds_a_corrupt_index_of_its_own(shapes_model_with_heads, shapes_dir, tmp_path, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    images, out = str(shapes_dir / "images"), str(tmp_path / "index")
    assert main(["index", images, "--out", out, *model]) == 0
    (tmp_path / "index" / "index.json").write_text("null")
    assert main(["search", "red", "--index", out, *model]) == 2
    assert "corrupt gallery index" in _one_line_error(capsys.readouterr().err, "search")
    assert main(["index", images, "--out", out, *model]) == 0  # no --rebuild needed
    assert main(["search", "red", "--index", out, "-k", "2", *model]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # "indexed ..." and two results


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


def test_caps_and_long_input_are_short_one_line_errors(shapes_model_with_heads, capsys):
    model = ["--model", str(shapes_model_with_heads)]
    assert main(["caption", "--samples", "--beam-size", "100000", *model]) == 2
    line = _one_line_error(capsys.readouterr().err, "caption")
    assert "beam_size must be an integer from 1 to 64, got 100000" in line
    assert main(["tag", "--samples", "-k", "5000", *model]) == 2
    assert "k must be an integer from 1 to 1,000, got 5000" in _one_line_error(capsys.readouterr().err, "tag")
    assert main(["similar-words", "q" * 10_000, "--space", "glove", *model]) == 2
    line = _one_line_error(capsys.readouterr().err, "similar-words")
    assert f"{'q' * 40!r}… is not in the GloVe vocabulary" in line and len(line) < 150
