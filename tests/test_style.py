"""Create, style transfer: the style loss falls from the content photo's while the content loss stays below the
style photo's own, losses are relative, and one error per bad input. On conftest's tiny model."""

from __future__ import annotations

import pytest
import torch

from onenet_hf import OneNetError
from onenet_hf.create.style import gram, style_losses
from tests.conftest import draw_shape


def test_gram_is_channel_co_activation_per_position():
    activations = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # 2 channels, 1x2 positions
    assert gram(activations).tolist() == [[[2.5, 1.5], [1.5, 4.5]]]


def test_style_loss_falls_while_content_stays_below_the_style_photo(tiny_net, tmp_path):
    content, style = draw_shape("red", "circle", 3), draw_shape("blue", "square", 1)
    content.save(tmp_path / "content.png")
    style.save(tmp_path / "style.png")
    start = style_losses(tiny_net.model, tiny_net.processor, content, content, style, 64)
    assert start.content == pytest.approx(0.0, abs=1e-6) and start.style == pytest.approx(1.0)
    result = tiny_net.style(tmp_path / "content.png", tmp_path / "style.png", steps=25, size=64, progress=False)
    result.images[0].save(tmp_path / "result.png")
    losses = style_losses(tiny_net.model, tiny_net.processor, tmp_path / "result.png", content, style, 64)
    assert losses.style < 0.7 and losses.content < 1.0, losses


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(content_weight=-1), "content weight must be a number from 0"),
        (dict(style_weight=float("inf")), "style weight must be a number from 0"),
        (dict(steps=10**5), "steps must be an integer from 1 to 2,000"),
    ],
)
def test_one_error_each_for_bad_input(tiny_net, options, message):
    photo = draw_shape("red", "circle", 3)
    with pytest.raises(OneNetError, match=message):
        tiny_net.style(photo, photo, **options, progress=False)


def test_an_unreadable_style_photo_is_named(tiny_net, tmp_path):
    (tmp_path / "style.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(OneNetError, match="style.jpg: not an image file"):
        tiny_net.style(draw_shape("red", "circle", 3), tmp_path / "style.jpg", progress=False)
