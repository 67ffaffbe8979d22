"""The network and its Hugging Face packaging: config, save/load, Auto classes, offline loading."""

from __future__ import annotations

import inspect
import io
import json
import logging
import math
import re
import subprocess
import sys
import textwrap
import unittest.mock

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoProcessor
from transformers.utils import logging as transformers_logging

from onenet_hf import OneNetConfig, OneNetImageProcessor, OneNetModel, OneNetProcessor, build_tokenizer
from onenet_hf.errors import OneNetError
from onenet_hf.modeling_onenet import OneNetImagePooling, backbone_wheel_state_dict

TINY = dict(vocab_size=12, hidden_size=16, word_embedding_size=8, decoder_hidden_size=16, dropout=0.0)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A saved tiny model with processor; trainable weights randomised so round trips are meaningful."""
    torch.manual_seed(0)
    model = OneNetModel(OneNetConfig(**TINY)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.startswith("backbone."):
                parameter.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("tiny")
    model.save_pretrained(folder)
    tokenizer = build_tokenizer(["a red circle", "a blue square", "one green triangle"], min_frequency=1)
    OneNetProcessor(image_processor=OneNetImageProcessor(), tokenizer=tokenizer).save_pretrained(folder)
    return model, folder


def _inputs():
    torch.manual_seed(1)
    return torch.randn(2, 3, 260, 260), torch.tensor([[2, 4, 5, 6], [2, 7, 8, 0]])


def test_config_docstring_defaults_match_code():
    documented = dict(re.findall(r"(\w+) \(`[^`]+`, \*optional\*, defaults to `?([^`)]+)`?\)", OneNetConfig.__doc__))
    signature = inspect.signature(OneNetConfig.__init__).parameters
    assert set(documented) == {name for name in signature if name not in ("self", "kwargs")}
    for name, text in documented.items():
        assert str(signature[name].default) == text.strip('"'), name


def test_config_rejects_unknown_pooling():
    with pytest.raises(OneNetError, match="image_pooling must be 'mean' or 'attention'"):
        OneNetConfig(image_pooling="max")


@pytest.mark.parametrize("value", [10**12, 1e12, 0, -5, "20000", True, None])
def test_config_refuses_a_size_out_of_range_before_any_layer_is_made(tmp_path, value):
    with pytest.raises(OneNetError, match="config.json: tag_vocabulary_size must be an integer from 1 to 50,000"):
        OneNetConfig(tag_vocabulary_size=value)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "onenet", "hidden_size": value}))
    with pytest.raises(OneNetError, match="hidden_size must be an integer from 1 to 4,096"):
        OneNetConfig.from_pretrained(tmp_path)  # as a damaged or hostile checkpoint loads


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rerank_weight", float("nan"), "rerank_weight must be a number from -100 to 100, got nan"),
        ("dropout", 1.5, "dropout must be a number from 0 to 1"),
        ("eos_token_id", 10**12, "eos_token_id must be a token id below vocab_size"),
        ("pad_token_id", -1, "pad_token_id must be a token id below vocab_size"),
    ],
)
def test_config_refuses_floats_and_token_ids_out_of_range(field, value, message):
    with pytest.raises(OneNetError, match=message):
        OneNetConfig(**{field: value})


def test_fresh_model_has_wheel_backbone_and_frozen_backbone():
    model = OneNetModel(OneNetConfig(**TINY))
    wheel = backbone_wheel_state_dict("efficientnet-lite2")
    for key, value in model.backbone.net.state_dict().items():
        assert torch.equal(value, wheel[key]), key
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert not any(m.training for m in model.backbone.modules())
    model.train()
    assert not model.backbone.training and model.decoder.training


def test_forward_shapes_loss_and_gradient_to_image_vector(tiny_folder):
    model, _ = tiny_folder
    pixels, ids = _inputs()
    out = model(pixel_values=pixels, input_ids=ids, labels=ids.roll(-1, 1))
    assert out.logits.shape == (2, 4, TINY["vocab_size"]) and out.image_embeds.shape == (
        2,
        TINY["hidden_size"],
    )
    embeds = out.image_embeds.detach().requires_grad_(True)
    model(input_ids=ids, labels=ids.roll(-1, 1), image_embeds=embeds).loss.backward()
    assert embeds.grad.abs().sum() > 0


@pytest.fixture
def transformers_log():
    """Everything transformers logs during the test (its logger does not propagate to pytest's caplog)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    transformers_logging.add_handler(handler)
    yield stream
    transformers_logging.remove_handler(handler)


def test_checkpoint_leaves_out_backbone_and_round_trip_is_exact(tiny_folder, transformers_log):
    model, folder = tiny_folder
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:
        keys = set(weights.keys())
    assert keys and not any(k.startswith("backbone.") for k in keys)
    loaded = OneNetModel.from_pretrained(folder).eval()
    assert transformers_log.getvalue() == ""
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert not any(p.requires_grad for p in loaded.backbone.parameters())
    assert all(p.requires_grad for name, p in loaded.named_parameters() if not name.startswith("backbone."))
    pixels, ids = _inputs()
    with torch.no_grad():
        assert torch.equal(model(pixels, ids).logits, loaded(pixels, ids).logits)


def test_a_truly_missing_weight_is_reported(tiny_folder, tmp_path, transformers_log):
    model, _ = tiny_folder
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["image_projection.weight"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    OneNetModel.from_pretrained(tmp_path)
    assert "image_projection.weight | MISSING" in transformers_log.getvalue()


def test_auto_classes(tiny_folder):
    _, folder = tiny_folder
    assert isinstance(AutoConfig.from_pretrained(folder), OneNetConfig)
    assert isinstance(AutoModel.from_pretrained(folder), OneNetModel)
    assert isinstance(AutoImageProcessor.from_pretrained(folder), OneNetImageProcessor)  # preprocessor_config.json
    processor = AutoProcessor.from_pretrained(folder)
    assert isinstance(processor, OneNetProcessor)
    assert isinstance(processor.image_processor, OneNetImageProcessor)


def test_loading_never_touches_the_network(tiny_folder):
    _, folder = tiny_folder
    script = textwrap.dedent(
        f"""
        import socket
        def refuse(*args, **kwargs):
            raise OSError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        import torch, onenet_hf
        from transformers import AutoModel, AutoProcessor
        model = AutoModel.from_pretrained({str(folder)!r}).eval()
        processor = AutoProcessor.from_pretrained({str(folder)!r})
        pixels = processor(images=[torch.zeros(3, 40, 40, dtype=torch.uint8).numpy().transpose(1, 2, 0)])
        print(model(**pixels).image_embeds.shape)
        """
    )
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch.Size([1, 16])" in result.stdout


def test_processor_needs_images_or_text(tiny_folder):
    _, folder = tiny_folder
    processor = OneNetProcessor.from_pretrained(folder)
    with pytest.raises(OneNetError, match="either images or text"):
        processor()
    encoded = processor(text=["a red circle", "a blue square"])
    assert processor.batch_decode(encoded["input_ids"], skip_special_tokens=True) == [
        "a red circle",
        "a blue square",
    ]


def test_image_pooling_modes():
    grid = torch.randn(2, 1280, 9, 9)
    mean = OneNetImagePooling(OneNetConfig(image_pooling="mean"))
    assert torch.allclose(mean(grid), grid.mean((2, 3)), atol=1e-6)
    attention = OneNetImagePooling(OneNetConfig(image_pooling="attention"))
    with torch.no_grad():
        attention.score.weight.zero_()  # equal scores: the softmax weighting becomes the mean
        assert torch.allclose(attention(grid), grid.mean((2, 3)), atol=1e-5)
        attention.score.weight.normal_()
        pooled, cells = attention(grid), grid.flatten(2)
        assert ((pooled >= cells.min(-1).values - 1e-5) & (pooled <= cells.max(-1).values + 1e-5)).all()


def test_caption_token_log_probs_per_row_padding_and_their_sum(tiny_folder):
    model, _ = tiny_folder
    torch.manual_seed(2)
    embeds = model.image_norm(torch.randn(2, TINY["hidden_size"])).detach()
    ids = [[2, 4, 5, 6, 3], [2, 7, 3]]
    with torch.no_grad():
        token_log_probs = model.caption_token_log_probs(ids, embeds)
        assert token_log_probs.shape == (2, 4)
        for row, row_ids in enumerate(ids):  # each row alone, unpadded: log_softmax of the next token's logit
            logits = model(input_ids=torch.tensor([row_ids[:-1]]), image_embeds=embeds[row : row + 1]).logits[0]
            expected = logits.log_softmax(-1)[torch.arange(len(row_ids) - 1), row_ids[1:]]
            assert torch.allclose(token_log_probs[row, : len(expected)], expected, atol=1e-6)
            assert (token_log_probs[row, len(expected) :] == 0).all()
        assert (token_log_probs[0] < 0).all()
        assert torch.equal(model.caption_log_likelihood(ids, embeds), token_log_probs.sum(1))


def test_caption_token_log_probs_are_zero_past_a_row_end_when_the_pad_is_suppressed(tiny_folder):
    model, _ = tiny_folder
    embeds = model.image_norm(torch.randn(2, TINY["hidden_size"], generator=torch.Generator().manual_seed(3)))
    ids = [[2, 4, 5, 6, 3], [2, 7, 3]]
    suppressed = (model.config.pad_token_id, 1)
    with torch.no_grad():
        token_log_probs = model.caption_token_log_probs(ids, embeds.detach(), suppress_token_ids=suppressed)
    assert torch.isfinite(token_log_probs).all()  # SCST sums these rows into its loss
    assert (token_log_probs[1, 2:] == 0).all()


@pytest.mark.parametrize("layers", [1, 2])
def test_the_decoder_lstm_in_eval_mode_with_gradients_is_the_plain_lstm(layers):
    """`run_lstm` asks the kernel for its training mode (what cuDNN needs to backpropagate) without dropout:
    the outputs and gradients of nn.LSTM in eval mode, through the private `_VF.lstm` it pins."""
    torch.manual_seed(0)
    config = OneNetConfig(vocab_size=9, hidden_size=8, word_embedding_size=4, decoder_hidden_size=6,
                          decoder_layers=layers, dropout=0.5)  # fmt: skip
    decoder = OneNetModel(config).decoder.eval()
    inputs = torch.randn(3, 5, 12, requires_grad=True)
    state = (torch.randn(layers, 3, 6), torch.randn(layers, 3, 6))
    ours, (h, c) = decoder.run_lstm(inputs, state)
    (ours_grad,) = torch.autograd.grad(ours.sum() + h.sum() + c.sum(), inputs)
    plain, (h_plain, c_plain) = decoder.lstm(inputs, state)
    (plain_grad,) = torch.autograd.grad(plain.sum() + h_plain.sum() + c_plain.sum(), inputs)
    for a, b in ((ours, plain), (h, h_plain), (c, c_plain), (ours_grad, plain_grad)):
        torch.testing.assert_close(a, b)


def test_teacher_forced_logits_without_autograd_are_the_lstm_forward_with_repeated_and_padded_tokens():
    """The shorter road (image gates once per row, each distinct token's once) gives nn.LSTM's logits: one text
    for many images (re-ranking), different texts with padding, and the same texts again under autograd (the
    road nn.LSTM takes there)."""
    torch.manual_seed(0)
    model = OneNetModel(OneNetConfig(**TINY)).eval()
    decoder = model.decoder
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("decoder."):
                parameter.normal_(0, 0.5)
    images = torch.randn(4, TINY["hidden_size"])
    for input_ids in (
        torch.tensor([[1, 5, 7, 5]] * 4),
        torch.tensor([[1, 3, 0, 0], [1, 4, 4, 2], [1, 2, 3, 9], [1, 0, 0, 0]]),
    ):
        with torch.no_grad():
            expected = decoder(input_ids, decoder.initial_state(images))[0]
            with unittest.mock.patch.object(decoder, "run_lstm", side_effect=AssertionError("took nn.LSTM")):
                torch.testing.assert_close(decoder.teacher_forced_logits(input_ids, images), expected)
        with torch.enable_grad():
            torch.testing.assert_close(decoder.teacher_forced_logits(input_ids, images), expected)


def test_input_gradients_turn_autograd_on_in_eval_mode_and_restore_the_mode_even_on_error(tiny_net):
    model = tiny_net.model
    was_training = model.training
    model.train()
    try:
        with torch.inference_mode(), pytest.raises(RuntimeError, match="inside"):
            with model.input_gradients():
                assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled() and not model.training
                raise RuntimeError("inside")
        assert model.training
    finally:
        model.train(was_training)


@pytest.mark.parametrize("penalty", [1000, 1e308, -1000, -math.inf, math.nan, math.inf, True, "1"])
def test_a_length_penalty_beyond_ten_or_not_a_finite_number_is_refused_by_name(tiny_net, penalty):
    pixels = torch.zeros(1, 3, 64, 64)
    with pytest.raises(OneNetError, match=r"length_penalty must be a number from -10 to 10, got "):
        tiny_net.model.generate(pixels, length_penalty=penalty)
    with pytest.raises(OneNetError, match="length_penalty must be"):
        tiny_net.caption(np.zeros((64, 64, 3), np.uint8), length_penalty=penalty)


def test_onenet_caption_checks_the_length_penalty_before_looking_for_the_model(capsys):
    from onenet_hf.cli import main

    assert main(["caption", "--example-photos", "--length-penalty=-inf", "--model", "no/such-model"]) == 2
    assert "length_penalty must be a number from -10 to 10, got -inf" in capsys.readouterr().err


@pytest.mark.parametrize("penalty", [-10, 10])
def test_the_extreme_length_penalties_are_usable(tiny_net, penalty):
    ids = tiny_net.model.generate(torch.zeros(2, 3, 64, 64), num_beams=3, length_penalty=penalty)
    assert ids.shape[0] == 2


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--learning-rate", "nan", "--learning-rate must be a number above 0 and at most 1, got 'nan'"),
        ("--learning-rate", "inf", "--learning-rate must be a number above 0 and at most 1, got 'inf'"),
        ("--dropout", "2", "--dropout must be a number from 0 to below 1, got '2.0'"),
        ("--label-smoothing", "-inf", "--label-smoothing must be a number from 0 to below 1, got '-inf'"),
        ("--gradient-clip", "1e308", "--gradient-clip must be a number above 0 and at most 1e6, got '1e+308'"),
        ("--weight-decay", "-1", "--weight-decay must be a number from 0 to 1, got '-1.0'"),
    ],
)
def test_training_numbers_are_checked_before_any_work(tmp_path, capsys, flag, value, message):
    from onenet_hf.cli import main

    args = ["train", "--data-dir", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out"), f"{flag}={value}"]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
