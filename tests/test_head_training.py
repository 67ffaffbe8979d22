"""Second training stage: heads trained on a frozen caption network, resumable, caption weights untouched."""

from __future__ import annotations

import json

import pytest
import torch

from onenet_hf import OneNetModel
from onenet_hf.evaluation import retrieval_metrics
from onenet_hf.training.heads import HEADS_LOG_FILE, HeadTrainingArguments, train_heads
from tests.conftest import shapes_head_arguments

pytestmark = pytest.mark.slow


def test_heads_learn_and_the_caption_network_is_unchanged(shapes_model, shapes_model_with_heads):
    before = OneNetModel.from_pretrained(shapes_model).state_dict()
    after = OneNetModel.from_pretrained(shapes_model_with_heads).state_dict()
    for name, tensor in before.items():
        if not name.startswith(("tag_head.", "retrieval_head.")):
            assert torch.equal(tensor, after[name]), name
    assert not torch.equal(before["tag_head.logit_scale"], after["tag_head.logit_scale"])
    log = json.loads((shapes_model_with_heads / HEADS_LOG_FILE).read_text())
    tag_rows = [row for row in log if row["head"] == "tag"]
    retrieval_rows = [row for row in log if row["head"] == "retrieval"]
    assert max(r["dev_tag_precision@5"] for r in tag_rows) >= 0.4  # 2 of 5 tags are colour and shape
    assert max(r["dev_text_to_image_R@10"] for r in retrieval_rows) > 100 * 10 / 12  # chance is 10 in 12


def test_rerun_reuses_finished_heads(shapes_model, shapes_dir, feature_cache, tmp_path, capsys):
    """Run in a folder of its own (short schedules): a re-run writes its output folder again, and the shared
    `shapes_model_with_heads` folder must stay as its fixture made it."""
    arguments = shapes_head_arguments(shapes_model, shapes_dir, tmp_path / "heads", feature_cache)
    arguments = HeadTrainingArguments(**{**arguments.__dict__, "tag_epochs": 2, "retrieval_epochs": 2})
    first = train_heads(arguments)
    assert json.loads((first / "config.json").read_text())["model_type"] == "onenet"
    trained = OneNetModel.from_pretrained(first).state_dict()
    capsys.readouterr()
    assert train_heads(arguments) == first
    captured = capsys.readouterr()
    printed = captured.out + captured.err
    assert "tag head already trained" in printed and "retrieval head already trained" in printed
    assert "tag head 1" not in printed and "retrieval head 1" not in printed  # no epoch ran again
    rerun = OneNetModel.from_pretrained(first).state_dict()
    for name, tensor in trained.items():
        assert torch.equal(tensor, rerun[name]), name
    with pytest.raises(ValueError, match="other arguments"):
        train_heads(HeadTrainingArguments(**{**arguments.__dict__, "tag_epochs": 1}))


def test_heads_start_afresh_whatever_heads_the_input_folder_has(
    shapes_model, shapes_model_with_heads, shapes_dir, feature_cache, tmp_path
):
    def short_run(model_dir, output_dir):  # one epoch each: the same start is what matters, not the schedule
        arguments = shapes_head_arguments(model_dir, shapes_dir, output_dir, feature_cache)
        return train_heads(HeadTrainingArguments(**{**arguments.__dict__, "tag_epochs": 1, "retrieval_epochs": 1}))

    first = OneNetModel.from_pretrained(short_run(shapes_model, tmp_path / "from-captions")).state_dict()
    second = OneNetModel.from_pretrained(short_run(shapes_model_with_heads, tmp_path / "from-heads")).state_dict()
    assert first.keys() == second.keys()
    trained = OneNetModel.from_pretrained(shapes_model_with_heads).state_dict()
    assert not torch.equal(first["tag_head.logit_scale"], trained["tag_head.logit_scale"])  # the input's heads differ
    for name, tensor in first.items():  # same recipe, same seeds: the same heads as from the caption-only model
        assert torch.equal(tensor, second[name]), name


def test_retraining_one_head_keeps_the_other_and_its_log(shapes_model_with_heads, shapes_dir, feature_cache, tmp_path):
    arguments = shapes_head_arguments(shapes_model_with_heads, shapes_dir, tmp_path, feature_cache)
    again = train_heads(HeadTrainingArguments(**{**arguments.__dict__, "heads": "tag", "tag_epochs": 2}))
    before = OneNetModel.from_pretrained(shapes_model_with_heads).state_dict()
    after = OneNetModel.from_pretrained(again).state_dict()
    for name, tensor in before.items():
        if not name.startswith("tag_head."):
            assert torch.equal(tensor, after[name]), name
    assert not torch.equal(before["tag_head.logit_scale"], after["tag_head.logit_scale"])
    old_log = json.loads((shapes_model_with_heads / HEADS_LOG_FILE).read_text())
    new_log = json.loads((again / HEADS_LOG_FILE).read_text())
    assert [row["epoch"] for row in new_log if row["head"] == "tag"] == [1, 2]
    assert [row for row in new_log if row["head"] != "tag"] == [row for row in old_log if row["head"] != "tag"]
    with pytest.raises(ValueError, match="name one or more of tag, retrieval"):
        train_heads(HeadTrainingArguments(**{**arguments.__dict__, "heads": "tags", "output_dir": str(tmp_path / "x")}))


def test_retrieval_metrics_on_a_known_matrix():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.5], [0.7, 0.1, 0.3], [0.1, 0.2, 0.3]])
    owners = torch.tensor([0, 1, 2, 2])  # text 2 ranks its image second, text 3 first
    metrics = retrieval_metrics(similarity, owners)
    assert metrics["text_to_image_R@1"] == 75.0 and metrics["text_to_image_R@5"] == 100.0
    assert metrics["image_to_text_R@1"] == pytest.approx(100 * 2 / 3)  # image 2's best text ranks below text 1
    assert metrics["text_to_image_median_rank"] == 1.0
