"""Training end to end on the synthetic shapes set: it learns, it is reproducible (bit-identical weights for one
seed, from a cold or a warm feature cache, interrupted or not), and an interrupted run resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from onenet_hf import OneNet, read_flickr8k
from onenet_hf.errors import OneNetError
from onenet_hf.training import captions as training_module
from onenet_hf.training.arguments import HeadTrainingArguments, SCSTArguments
from onenet_hf.training.captions import LOG_FILE, STATE_FILE, CaptionTrainingArguments, train

from .conftest import SMALL, write_shapes_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """One train and one dev image per class (12 + 12): the smallest set whose features take little time."""
    return write_shapes_dataset(tmp_path_factory.mktemp("tiny_shapes"), {"train": 1, "dev": 1})


def tiny_run(data_dir, output_dir, cache_dir, seed=0, epochs=2, **overrides):
    """Train on `data_dir` and return the trainable weights after the last epoch (training_state.pt)."""
    arguments = {**SMALL, "seed": seed, "epochs": epochs, **overrides}
    train(
        CaptionTrainingArguments(
            data_dir=str(data_dir), output_dir=str(output_dir), cache_dir=str(cache_dir), **arguments
        )
    )
    return torch.load(output_dir / STATE_FILE, weights_only=False)["model"]


def differing(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> list[str]:
    assert first.keys() == second.keys()
    return [name for name in first if not torch.equal(first[name], second[name])]


def test_same_seed_gives_identical_weights_from_a_cold_or_a_warm_feature_cache(tiny_dir, tmp_path):
    cache = tmp_path / "cache"
    cold = tiny_run(tiny_dir, tmp_path / "cold", cache)  # computes the backbone features
    assert (cache / next(cache.iterdir()).name / "complete").exists()
    warm = tiny_run(tiny_dir, tmp_path / "warm", cache)  # reads them
    assert differing(cold, warm) == []
    other_seed = tiny_run(tiny_dir, tmp_path / "seed1", cache, seed=1)
    assert len(differing(cold, other_seed)) > len(cold) // 2  # so the comparison can fail


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


def test_interrupted_training_resumes_to_the_same_result(tiny_dir, tmp_path, monkeypatch):
    """Straight through from an empty feature cache, against stopped after epoch 1 and resumed on a full cache."""
    evaluate = training_module.evaluate_on_features

    def run(folder, cache, interrupt_after=None):
        calls = []

        def evaluate_then_maybe_stop(*args, **kwargs):
            if interrupt_after is not None and len(calls) == interrupt_after:
                raise Interrupted
            calls.append(1)
            return evaluate(*args, **kwargs)

        monkeypatch.setattr(training_module, "evaluate_on_features", evaluate_then_maybe_stop)
        return tiny_run(tiny_dir, folder, cache, epochs=3)

    straight = run(tmp_path / "straight", tmp_path / "cold-cache")
    with pytest.raises(Interrupted):
        run(tmp_path / "resumed", tmp_path / "cold-cache", interrupt_after=1)
    assert len(json.loads((tmp_path / "resumed" / LOG_FILE).read_text())) == 1
    torch.manual_seed(12345)  # a resumed process starts with another generator state
    resumed = run(tmp_path / "resumed", tmp_path / "cold-cache")
    assert differing(straight, resumed) == []
    logs = [json.loads((tmp_path / name / LOG_FILE).read_text()) for name in ("straight", "resumed")]
    assert logs[0] == logs[1]


def test_full_determinism_trains_alike_and_restores_the_global_settings(tiny_dir, tmp_path):
    """On a CPU `--full-determinism` changes no weight (the default is already deterministic there)."""
    before = torch.are_deterministic_algorithms_enabled()
    strict = tiny_run(tiny_dir, tmp_path / "strict", tmp_path / "cache", epochs=1, full_determinism=True)
    assert torch.are_deterministic_algorithms_enabled() == before
    default = tiny_run(tiny_dir, tmp_path / "default", tmp_path / "cache", epochs=1)
    assert differing(strict, default) == []


def test_resume_refuses_other_arguments(shapes_dir, feature_cache, tmp_path):
    args = dict(data_dir=str(shapes_dir), output_dir=str(tmp_path), cache_dir=feature_cache, **SMALL)
    train(CaptionTrainingArguments(epochs=1, **args))
    with pytest.raises(ValueError, match="other training arguments"):
        train(CaptionTrainingArguments(epochs=2, **args))


FOLDERS = {
    CaptionTrainingArguments: dict(data_dir="d", output_dir="o"),
    HeadTrainingArguments: dict(model_dir="m", data_dir="d", output_dir="o"),
    SCSTArguments: dict(model_dir="m", data_dir="d", output_dir="o"),
}


@pytest.mark.parametrize(
    ("arguments", "change", "message"),
    [
        (CaptionTrainingArguments, {"seed": 2**40}, "--seed must be 0 to 4294967295 (a whole number), got 10995116"),
        (CaptionTrainingArguments, {"seed": -1}, "--seed must be 0 to 4294967295"),
        (CaptionTrainingArguments, {"batch_size": 0}, "--batch-size must be >= 1 (a whole number), got 0"),
        (CaptionTrainingArguments, {"epochs": -1}, "--epochs must be >= 1 (a whole number), got -1"),
        (CaptionTrainingArguments, {"epochs": 1.5}, "--epochs must be >= 1 (a whole number), got 1.5"),
        (CaptionTrainingArguments, {"warmup_steps": -1}, "--warmup-steps must be >= 0"),
        (CaptionTrainingArguments, {"min_word_frequency": 0}, "--min-word-frequency must be >= 1"),
        (CaptionTrainingArguments, {"eval_beam_size": 0}, "--eval-beam-size must be 1 to 64"),
        (CaptionTrainingArguments, {"hidden_size": 0}, "--hidden-size must be 1 to 8192"),
        (CaptionTrainingArguments, {"decoder_hidden_size": 10**9}, "--decoder-hidden-size must be 1 to 8192"),
        (CaptionTrainingArguments, {"word_embedding_size": True}, "--word-embedding-size must be 1 to 8192"),
        (CaptionTrainingArguments, {"learning_rate": float("nan")}, "--learning-rate must be a number above 0"),
        (HeadTrainingArguments, {"tag_batch_size": 0}, "--tag-batch-size must be >= 1"),
        (HeadTrainingArguments, {"retrieval_epochs": 0}, "--retrieval-epochs must be >= 1"),
        (HeadTrainingArguments, {"learning_rate": 0.0}, "--learning-rate must be a number above 0"),
        (SCSTArguments, {"eval_beam_size": 65}, "--eval-beam-size must be 1 to 64"),
        (SCSTArguments, {"learning_rate": float("inf")}, "--learning-rate must be a number above 0"),
    ],
)
def test_training_arguments_refuse_a_number_out_of_range(arguments, change, message):
    with pytest.raises(OneNetError) as error:
        arguments(**FOLDERS[arguments], **change)
    assert message in str(error.value)


@pytest.mark.parametrize("arguments", list(FOLDERS), ids=lambda a: a.__name__)
def test_training_arguments_take_the_seeds_numpy_takes(arguments):
    assert arguments(**FOLDERS[arguments], seed=2**32 - 1).seed == 2**32 - 1
    with pytest.raises(OneNetError, match="--seed must be 0 to 4294967295"):
        arguments(**FOLDERS[arguments], seed=2**32)


def test_a_batch_size_of_0_is_one_line_before_any_work(tmp_path, capsys):
    from onenet_hf.cli import main

    folders = ["--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out")]
    args = ["train", *folders, "--batch-size", "0"]
    assert main(args) == 2
    assert capsys.readouterr().err == "onenet train: error: --batch-size must be >= 1 (a whole number), got 0\n"
    assert not (tmp_path / "out").exists()


def test_a_word_frequency_that_empties_the_vocabulary_is_refused_before_any_output(tiny_dir, tmp_path):
    args = CaptionTrainingArguments(
        data_dir=str(tiny_dir), output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
        min_word_frequency=10**9,
    )  # fmt: skip
    with pytest.raises(OneNetError, match="--min-word-frequency 1000000000: no word of the 'train' captions occurs"):
        train(args)
    assert not (tmp_path / "out").exists()
