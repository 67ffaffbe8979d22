"""Self-critical training: its baselines, a policy-gradient step that moves towards rewarded captions, the risk over
the beam's n-best list (padding, dropout, decoding in eval mode), and the `train-scst` stage on the shapes set (only
the decoder learns, per-epoch dev figures, resumes exactly, with either rollout)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from onenet_hf import OneNetModel, OneNetProcessor
from onenet_hf.data.datasets import read_split
from onenet_hf.data.feature_cache import cached_backbone_features
from onenet_hf.decoding import generate_candidates
from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import evaluate_on_features
from onenet_hf.modeling_onenet import never_generated_token_ids
from onenet_hf.training import scst as scst_module
from onenet_hf.training.captions import LOG_FILE
from onenet_hf.training.cider import CiderD
from onenet_hf.training.scst import (
    SCST_LOG_FILE,
    SCST_STATE_FILE,
    SCST_TRAINABLE,
    SCSTArguments,
    baselines,
    risk,
    scst_loss,
)


def test_mean_baseline_is_the_mean_of_the_other_samples_and_greedy_the_greedy_reward():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    assert baselines(rewards, None).tolist() == [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]]
    assert baselines(rewards, torch.tensor([1.0, 4.0])).tolist() == [[1.0] * 3, [4.0] * 3]


def test_risk_is_the_expected_negative_reward_under_probabilities_renormalised_over_the_candidates():
    third = float(torch.tensor(3.0).log())
    log_likelihoods = torch.tensor([[-1.0, -1.0, float("-inf")], [-2.0, -2.0 - third, float("-inf")]])
    rewards = torch.tensor([[1.0, 3.0, 100.0], [4.0, 0.0, 0.0]])  # a padded candidate's reward counts for nothing
    expected = -((1.0 + 3.0) / 2 + 4.0 * 3 / 4) / 2  # weights 1/2, 1/2 and 3/4, 1/4
    assert risk(log_likelihoods, rewards).item() == pytest.approx(expected, rel=1e-6)
    weights = log_likelihoods.clone().requires_grad_(True)
    risk(weights, rewards).backward()
    assert weights.grad[0, 1] < 0 < weights.grad[0, 0]  # descent raises the better candidate's likelihood
    assert weights.grad[0, 2] == 0


def _two_captions(net):
    """The tiny model in eval mode, the token ids of "a red circle" and CIDEr-D over it and "a blue square" (idf
    needs more than one image)."""
    reference, other = net.processor.tokenizer(["a red circle", "a blue square"], add_special_tokens=True)["input_ids"]
    return net.model.eval(), reference, CiderD([[reference[1:-1]], [other[1:-1]]])


def _adam_steps(model, cider, embeds, measure, **options) -> tuple[list[float], list[float], float | None]:
    """15 Adam steps on `scst_loss` for image 0: each step's loss and mean reward, and `measure()` after them; the
    weights are then put back (the tiny model is shared by the module's tests)."""
    parameters = [p for name, p in model.named_parameters() if name.startswith(SCST_TRAINABLE)]
    saved = [p.detach().clone() for p in parameters]
    optimizer = torch.optim.Adam(parameters, lr=0.05)
    losses, rewards = [], []
    for step in range(15):
        loss, reward = scst_loss(model, cider, embeds, [0], 16, "mean", seed=step, **options)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        rewards.append(reward)
    with torch.no_grad():
        measured = measure()
        for parameter, value in zip(parameters, saved, strict=True):
            parameter.copy_(value)
    return losses, rewards, measured


def test_policy_gradient_steps_make_the_rewarded_caption_likelier(tiny_net):
    model, reference, cider = _two_captions(tiny_net)
    embeds = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(0))

    def likelihood() -> float:
        return model.caption_log_likelihood([reference], embeds).item()

    with torch.no_grad():
        before = likelihood()
    _, rewards, after = _adam_steps(model, cider, embeds, likelihood)
    assert after > before + 1.0, (before, after)
    assert sum(rewards[-5:]) > sum(rewards[:5])


def test_risk_steps_over_the_beam_raise_its_expected_reward(tiny_net):
    model, _, cider = _two_captions(tiny_net)
    embeds = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    losses, _, _ = _adam_steps(model, cider, embeds, lambda: None, rollout="beam")
    expected_rewards = [-loss for loss in losses]
    assert sum(expected_rewards[-5:]) > sum(expected_rewards[:5]) + 1.0, expected_rewards


def test_dropout_applies_to_the_differentiated_pass_only_and_the_model_stays_in_eval_mode(tiny_net):
    model, _, cider = _two_captions(tiny_net)
    embeds = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0))

    def loss(dropout: bool, seed: int) -> tuple[float, float]:
        torch.manual_seed(seed)
        value, reward = scst_loss(model, cider, embeds, [0, 1], 4, "mean", 0, rollout="beam", dropout=dropout)
        assert not model.training
        return value.item(), reward

    plain, reward = loss(False, 0)
    assert loss(False, 1) == (plain, reward)  # no randomness without dropout
    masked, masked_reward = loss(True, 0)
    assert masked_reward == reward  # the same captions: they are decoded without dropout
    assert masked != plain
    assert loss(True, 0)[0] == masked  # the masks come from the global generator


def test_captions_are_decoded_in_eval_mode_whatever_the_model_s_mode_and_the_mode_is_given_back(tiny_net):
    model, _, cider = _two_captions(tiny_net)
    embeds = torch.randn(2, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    model.train()
    try:
        rewards = set()
        for seed in range(3):
            torch.manual_seed(seed)  # dropout, were it on while decoding, would draw other beams
            rewards.add(scst_loss(model, cider, embeds, [0, 1], 4, "mean", 0, rollout="beam")[1])
            assert model.training
    finally:
        model.eval()
    assert len(rewards) == 1


def test_a_beam_shorter_than_asked_is_padded_out_of_the_risk(tiny_net):
    model, _, cider = _two_captions(tiny_net)
    embeds = torch.randn(1, model.config.hidden_size, generator=torch.Generator().manual_seed(0))
    longest = model.generation_config.max_new_tokens
    model.generation_config.max_new_tokens = 2  # one word at most: fewer distinct captions than the beam asks for
    try:
        loss, _ = scst_loss(model, cider, embeds, [0], 16, "mean", 0, rollout="beam")
        generation = copy.deepcopy(model.generation_config)
        generation.num_beams = 16
        (candidates,) = generate_candidates(model, embeds, generation)
    finally:
        model.generation_config.max_new_tokens = longest
    assert 1 < len(candidates) < 16
    words = [h.token_ids for h in candidates]
    token_ids = [[model.config.bos_token_id, *w, model.config.eos_token_id] for w in words]
    with torch.no_grad():
        log_likelihoods = model.caption_token_log_probs(
            token_ids, embeds.expand(len(words), -1), suppress_token_ids=never_generated_token_ids(model.config)
        ).sum(1)
    rewards = torch.tensor(cider.scores(words, [0] * len(words)), dtype=torch.float32)
    assert loss.item() == pytest.approx(risk(log_likelihoods[None], rewards[None]).item(), rel=1e-5)


@pytest.mark.parametrize("options", [{"rollout": "beams"}, {"rollout": "beam", "baseline": "greedy"}])
def test_scst_loss_refuses_what_it_would_otherwise_ignore(tiny_net, options):
    model, _, cider = _two_captions(tiny_net)
    embeds = torch.zeros(1, model.config.hidden_size)
    arguments = {"baseline": "mean", **options}
    with pytest.raises(OneNetError, match="choose one of sample, beam|takes no --baseline"):
        scst_loss(model, cider, embeds, [0], 4, arguments.pop("baseline"), 0, **arguments)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"rollout": "sample", "dropout": False}, {}], ids=["samples", "defaults"])
def test_train_scst_changes_only_the_decoder_logs_each_epoch_and_resumes_exactly(
    shapes_model_with_heads, shapes_dir, feature_cache, tmp_path, monkeypatch, options
):
    arguments = dict(
        model_dir=str(shapes_model_with_heads), data_dir=str(shapes_dir), cache_dir=feature_cache,
        epochs=3, images_per_batch=8, samples_per_image=4, learning_rate=5e-3, eval_beam_size=1, **options,
    )  # fmt: skip
    loss, seen = scst_module.scst_loss, set()

    def recorded_loss(*args, **kwargs):
        seen.add((kwargs["rollout"], kwargs["dropout"]))
        return loss(*args, **kwargs)

    monkeypatch.setattr(scst_module, "scst_loss", recorded_loss)
    straight = scst_module.train_scst(SCSTArguments(output_dir=str(tmp_path / "straight"), **arguments))
    assert seen == {(options.get("rollout", "beam"), options.get("dropout", True))}  # the options reach the loss
    log = json.loads((straight / SCST_LOG_FILE).read_text())
    assert [row["epoch"] for row in log] == [0, 1, 2, 3]
    assert {"BLEU-4", "CIDEr", "repeated_bigram_%", "distinct_words"} <= log[0].keys()
    assert all(row["train_CIDEr-D_reward"] > 0 for row in log[1:])
    assert (straight / LOG_FILE).exists()  # the starting model's training log travels along

    start = OneNetModel.from_pretrained(shapes_model_with_heads).state_dict()
    final = torch.load(straight / SCST_STATE_FILE, weights_only=False)["trainable"]
    assert set(final) == {name for name in start if name.startswith(SCST_TRAINABLE)}
    assert any(not torch.equal(start[name], tensor) for name, tensor in final.items())
    saved = OneNetModel.from_pretrained(straight).state_dict()
    for name, tensor in start.items():
        if not name.startswith(SCST_TRAINABLE):  # representation, word embeddings and heads stay bit for bit
            assert torch.equal(tensor, saved[name]), name
    dev = read_split(shapes_dir, "dev")
    processor = OneNetProcessor.from_pretrained(straight)
    model = OneNetModel.from_pretrained(straight)
    features = cached_backbone_features(model, processor.image_processor, [e.path for e in dev], feature_cache)
    scores, _ = evaluate_on_features(model, processor, features, dev)
    assert scores["CIDEr"] == max(row["CIDEr"] for row in log)  # the written model is the best epoch's

    evaluate = scst_module.evaluate_on_features
    calls = []

    def evaluate_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # epoch 0 (the start), epoch 1, then stop during epoch 2's evaluation
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(scst_module, "evaluate_on_features", evaluate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        scst_module.train_scst(SCSTArguments(output_dir=str(tmp_path / "resumed"), **arguments))
    monkeypatch.setattr(scst_module, "evaluate_on_features", evaluate)
    torch.manual_seed(12345)  # a resumed process starts with another generator state
    resumed = scst_module.train_scst(SCSTArguments(output_dir=str(tmp_path / "resumed"), **arguments))
    assert json.loads((resumed / SCST_LOG_FILE).read_text()) == log
    again = torch.load(resumed / SCST_STATE_FILE, weights_only=False)["trainable"]
    assert all(torch.equal(final[name], again[name]) for name in final)
    state_path = resumed / SCST_STATE_FILE
    state = torch.load(state_path, weights_only=False)
    state["arguments"] = {k: v for k, v in state["arguments"].items() if k not in ("rollout", "dropout")}
    torch.save(state, state_path)  # as a run from before those options wrote it
    if options:  # such runs sampled without dropout, as this one did: the same run
        assert scst_module.train_scst(SCSTArguments(output_dir=str(resumed), **arguments)) == resumed
    else:
        with pytest.raises(OneNetError, match="other arguments"):
            scst_module.train_scst(SCSTArguments(output_dir=str(resumed), **arguments))
    with pytest.raises(OneNetError, match="other arguments"):
        scst_module.train_scst(SCSTArguments(output_dir=str(tmp_path / "resumed"), **{**arguments, "epochs": 4}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"baseline": "best"}, "choose one of mean, greedy"),
        ({"rollout": "nucleus"}, "choose one of sample, beam"),
        ({"rollout": "beam", "baseline": "greedy"}, "--rollout beam takes no --baseline"),
        ({"baseline": "greedy"}, "--rollout beam takes no --baseline"),  # the default rollout
        ({"samples_per_image": 1}, "the baseline needs 2"),
        ({"images_per_batch": 0}, "--images-per-batch must be 1 to"),
        ({"epochs": 0}, "--epochs must be >= 1"),
    ],
)
def test_bad_arguments_are_one_clear_error_before_any_work(tmp_path, change, message):
    arguments = dict(model_dir=str(tmp_path / "nowhere"), data_dir=str(tmp_path), output_dir=str(tmp_path / "out"))
    with pytest.raises(OneNetError, match=message):
        scst_module.train_scst(SCSTArguments(**{**arguments, **change}))
    assert not (tmp_path / "out").exists()


def test_output_dir_must_not_be_the_model_dir(shapes_model, shapes_dir, tmp_path):
    with pytest.raises(OneNetError, match="must differ from --model-dir"):
        scst_module.train_scst(
            SCSTArguments(model_dir=str(shapes_model), data_dir=str(shapes_dir), output_dir=str(shapes_model))
        )
