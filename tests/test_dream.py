"""Create, DeepDream: the chosen stage fires more on the dreamed photo, over octaves back to the photo's own size,
and one error per bad input. On conftest's tiny model (its backbone is the real one)."""

from __future__ import annotations

import pytest
import skimage.data
import torch
from PIL import Image

from onenet_hf import OneNetError
from onenet_hf.create.dream import measure_stage, stage_activation
from onenet_hf.create.optimization import from_image
from tests.conftest import draw_shape


def test_stage_activation_is_the_mean_of_the_positive_part():
    activations = torch.tensor([[[[1.0, -3.0], [2.0, 0.0]]]])
    assert stage_activation(activations).tolist() == [0.75]


def test_the_chosen_stage_fires_more_after_dreaming(tiny_net):
    photo = Image.fromarray(skimage.data.chelsea()).resize((96, 64))  # a photo: textures to amplify
    dreamed = tiny_net.dream(photo, stage="stage 3", steps=6, strength=3.0, octaves=2, size=64, progress=False)
    assert dreamed.pixels.shape == (1, 3, 64, 96)  # the short side at `size`, the aspect kept
    before = measure_stage(tiny_net.model, tiny_net.processor, from_image(photo, 64), "stage 3").item()
    after = measure_stage(tiny_net.model, tiny_net.processor, dreamed.pixels, "stage 3").item()
    assert after > 1.3 * before, (before, after)
    again = tiny_net.dream(photo, stage="stage 3", steps=6, strength=3.0, octaves=2, size=64, progress=False)
    assert torch.equal(again.pixels, dreamed.pixels)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(stage="stage 12"), "unknown stage 'stage 12'"),
        (dict(octaves=0), "octaves must be an integer from 1 to 6"),
        (dict(steps=2, octaves=3), r"steps \(2\) must be at least the number of octaves \(3\)"),
        (dict(strength=-1.0), "strength must be a number from 0"),
        (dict(steps=0), "steps must be an integer"),
    ],
)
def test_one_error_each_for_bad_input(tiny_net, options, message):
    with pytest.raises(OneNetError, match=message):
        tiny_net.dream(draw_shape("red", "circle", 3), **options, progress=False)


def test_an_unreadable_photo_is_named(tiny_net, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(OneNetError, match="broken.jpg: not an image file"):
        tiny_net.dream(tmp_path / "broken.jpg", progress=False)
