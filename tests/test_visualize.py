"""Create, feature visualisation: each kind of target rises, seeds repeat, diversity pushes images apart, and one
error per bad input. On the tiny model of conftest (its backbone is the real one), at 64x64 to stay fast."""

from __future__ import annotations

import pytest
import torch

from onenet_hf import OneNetError
from onenet_hf.create.optimization import FourierImage, backbone_input, last
from onenet_hf.create.visualize import gram_diversity, target_values, visualization_target, visualize_steps


def _values(net, target, pixels):
    mean, std = net.processor.image_processor.image_mean, net.processor.image_processor.image_std
    with torch.no_grad():
        return target_values(
            net.model, target, net.model.get_stage_features(backbone_input(net.model, pixels, mean, std))
        )


@pytest.mark.parametrize("kind", [dict(imagenet_class="goldfish"), dict(channel=7, stage="stage 3"), dict(unit=3)])
def test_each_target_rises_from_the_starting_image(tiny_net, kind):
    target = visualization_target(tiny_net.model, **kind)
    start = FourierImage(64, 1, torch.Generator().manual_seed(0))()
    final = last(visualize_steps(tiny_net.model, tiny_net.processor, target, steps=12, size=64), "t", progress=False)
    before, after = _values(tiny_net, target, start).item(), _values(tiny_net, target, final.pixels).item()
    assert after > before + 0.1 * abs(before) + 0.01, (before, after)


def test_a_class_visualisation_is_read_as_its_class(tiny_net):
    net, target = tiny_net, visualization_target(tiny_net.model, imagenet_class=1)
    final = net.visualize(imagenet_class=1, steps=30, size=96, progress=False)
    mean, std = net.processor.image_processor.image_mean, net.processor.image_processor.image_std
    with torch.no_grad():
        grid = net.model.get_backbone_features(backbone_input(net.model, final.pixels, mean, std))
        logits = net.model.get_imagenet_logits(net.model.get_pooled_features(grid))
    assert target.index == 1 and logits.argmax().item() == 1
    assert final.images[0].size == (96, 96)


def test_the_same_seed_gives_the_same_images_and_another_seed_others(tiny_net):
    def run(seed):
        return tiny_net.visualize(unit=0, steps=3, size=64, seed=seed, progress=False).pixels

    assert torch.equal(run(5), run(5))
    assert not torch.allclose(run(5), run(6))


def test_diversity_is_minus_the_mean_gram_cosine_between_images():
    same = torch.ones(2, 4, 3, 3)
    assert gram_diversity(same).item() == pytest.approx(-1.0)
    assert gram_diversity(same[:1]).item() == 0.0
    apart = torch.zeros(2, 4, 3, 3)
    apart[0, 0], apart[1, 1] = 1.0, 1.0
    assert gram_diversity(apart).item() == pytest.approx(0.0)


def test_several_images_come_back_side_by_side_ready(tiny_net):
    final = tiny_net.visualize(imagenet_class=1, steps=2, size=64, images=3, diversity=1.0, progress=False)
    assert final.pixels.shape == (3, 3, 64, 64) and len(final.images) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(), "give exactly one target"),
        (dict(imagenet_class=1, unit=2), "give exactly one target"),
        (dict(imagenet_class="no such thing"), "unknown ImageNet class"),
        (dict(imagenet_class=1000), "ImageNet class index must be 0-999"),
        (dict(channel=1280), "channel must be 0 to 1279"),
        (dict(channel=3, stage="stage 9"), "unknown stage 'stage 9'"),
        (dict(unit=16), "unit must be 0 to 15"),
        (dict(unit=0, steps=0), "steps must be an integer from 1"),
        (dict(unit=0, images=9), "images must be an integer from 1 to 8"),
        (dict(unit=0, size=5000), "image size must be"),
        (dict(unit=0, diversity=-1), "diversity must be a number from 0"),
        (dict(unit=0, size=1024), r"size 1024 \(1024x1024 pixels\) needs about 3,371 MiB of memory"),
        (dict(unit=0, size=400, images=8), r"x 8 images\) needs about .* or fewer images"),
    ],
)
def test_one_error_each_for_bad_input(tiny_net, options, message):
    with pytest.raises(OneNetError, match=message):
        tiny_net.visualize(**options, progress=False)
