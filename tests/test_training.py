"""Training end to end on the synthetic shapes set: it learns, and an interrupted run resumes exactly."""

from __future__ import annotations

import json

import pytest

from onenet_hf import OneNet, read_flickr8k
from onenet_hf import training as training_module
from onenet_hf.training import LOG_FILE, CaptionTrainingArguments, train

from .conftest import SMALL

pytestmark = pytest.mark.slow


def test_trained_model_captions_held_out_shapes(shapes_model, shapes_dir):
    net = OneNet.from_pretrained(shapes_model)
    dev = read_flickr8k(shapes_dir, "dev")
    captions = net.caption([e.path for e in dev], beam_size=3)
    wrong = [
        (e.path.name, c.text)
        for e, c in zip(dev, captions, strict=True)
        if not set(e.path.stem.split("_")[1:3]) <= set(c.text.split())
    ]
    assert len(wrong) <= 1, wrong
    history = json.loads((shapes_model / LOG_FILE).read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2


class Interrupted(Exception):
    """Stands in for a killed process (pytest itself stops on a real KeyboardInterrupt)."""


def test_interrupted_training_resumes_to_the_same_result(shapes_dir, feature_cache, tmp_path, monkeypatch):
    evaluate = training_module.evaluate_on_features

    def run(folder, interrupt_after=None):
        calls = []

        def evaluate_then_maybe_stop(*args, **kwargs):
            if interrupt_after is not None and len(calls) == interrupt_after:
                raise Interrupted
            calls.append(1)
            return evaluate(*args, **kwargs)

        monkeypatch.setattr(training_module, "evaluate_on_features", evaluate_then_maybe_stop)
        args = CaptionTrainingArguments(
            data_dir=str(shapes_dir), output_dir=str(folder), cache_dir=feature_cache, epochs=3, **SMALL
        )
        return train(args)

    straight = run(tmp_path / "straight")
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", interrupt_after=1)
    assert len(json.loads((tmp_path / "resumed" / LOG_FILE).read_text())) == 1
    resumed = run(tmp_path / "resumed")
    assert json.loads((resumed / LOG_FILE).read_text()) == json.loads((straight / LOG_FILE).read_text())


def test_resume_refuses_other_arguments(shapes_dir, feature_cache, tmp_path):
    args = dict(data_dir=str(shapes_dir), output_dir=str(tmp_path), cache_dir=feature_cache, **SMALL)
    train(CaptionTrainingArguments(epochs=1, **args))
    with pytest.raises(ValueError, match="other training arguments"):
        train(CaptionTrainingArguments(epochs=2, **args))
