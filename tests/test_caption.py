"""Captioning (use 1): steering the beam search towards the words of the backbone's ImageNet labels."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from onenet_hf import OneNetConfig, OneNetModel, build_tokenizer
from onenet_hf.errors import OneNetError
from onenet_hf.language.label_words import imagenet_classes_by_stem
from onenet_hf.uses.caption import imagenet_token_bias


def test_the_imagenet_bias_of_a_token_is_the_weighted_chance_that_a_label_names_it():
    tokenizer = build_tokenizer(["a cat on a circle", "two cats"], min_frequency=1)
    model = OneNetModel(OneNetConfig(vocab_size=len(tokenizer), hidden_size=16, word_embedding_size=8)).eval()
    model.get_imagenet_logits = lambda pooled: pooled  # the "pooled features" are the logits themselves
    logits = torch.randn(2, 1000)
    bias = imagenet_token_bias(model, tokenizer, logits, weight=2.0)
    assert bias.shape == (2, len(tokenizer))
    cat_chance = logits.softmax(-1)[:, list(imagenet_classes_by_stem()["cat"])].sum(1)
    for token in ("cat", "cats"):  # both forms of the word get its chance
        assert torch.allclose(bias[:, tokenizer.convert_tokens_to_ids(token)], 2.0 * cat_chance)
    for token in ("circle", "a", "[PAD]"):  # no class is named for them; stop-words and specials never are
        assert not bias[:, tokenizer.convert_tokens_to_ids(token)].any()


def test_steering_leaves_captions_alone_at_zero_and_brings_in_the_label_s_word(tiny_net, monkeypatch):
    image = Image.new("RGB", (64, 64), "gray")
    plain = tiny_net.caption(image, beam_size=2)[0]
    assert "blue" not in plain.text.split()  # so the steered caption's "blue" is the steering's doing
    assert tiny_net.caption(image, beam_size=2, imagenet_steering=0.0)[0] == plain
    sure_of_a_blue_class = torch.full((1, 1000), -30.0)
    sure_of_a_blue_class[0, imagenet_classes_by_stem()["blue"][0]] = 30.0
    monkeypatch.setattr(tiny_net.model, "get_imagenet_logits", lambda pooled: sure_of_a_blue_class)
    steered = tiny_net.caption(image, beam_size=2, imagenet_steering=100.0)[0]
    assert "blue" in steered.text.split(), (plain, steered)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf"), 1e39, "2", True])
def test_a_bad_steering_weight_is_a_clear_error(tiny_net, weight):
    with pytest.raises(OneNetError, match=r"imagenet_steering must be a number from 0 \(off\) to 100"):
        tiny_net.caption(Image.new("RGB", (64, 64)), imagenet_steering=weight)
