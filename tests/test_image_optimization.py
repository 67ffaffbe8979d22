"""The machinery Create shares: the Fourier image, the random transform, crops, checks, the Adam loop, and autograd
under any caller's grad mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from onenet_hf.create.imagine import imagine_steps
from onenet_hf.create.optimization import (
    FourierImage,
    PixelImage,
    check_image_size,
    check_learning_rate,
    check_steps,
    crop_and_resize,
    from_image,
    last,
    optimize,
    random_transform,
    to_pil,
)
from onenet_hf.errors import OneNetError
from tests.conftest import draw_shape


def test_fourier_image_is_in_range_seeded_and_learns_a_target_colour():
    first = FourierImage(32, 2, torch.Generator().manual_seed(1))
    again = FourierImage(32, 2, torch.Generator().manual_seed(1))
    pixels = first()
    assert pixels.shape == (2, 3, 32, 32) and 0 < pixels.min() and pixels.max() < 1
    assert torch.equal(pixels, again())
    red = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)

    def redness(p):
        return -((p - red) ** 2).mean()

    final = last(optimize(first, redness, 60, 0.1), "test", progress=False)
    assert final.objective > redness(pixels).item() + 0.05
    assert final.images[0].size == (32, 32)


def test_pixel_image_stays_in_range():
    image = PixelImage(torch.full((1, 3, 8, 8), 0.5))
    snapshots = list(optimize(image, lambda p: p.sum(), 5, 0.2, snapshot_every=2))
    assert [s.step for s in snapshots] == [1, 2, 3, 4, 5]
    assert [s.pixels is not None for s in snapshots] == [False, True, False, True, True]
    assert snapshots[-1].pixels.max() == 1.0
    with pytest.raises(OneNetError, match="not a snapshot step"):
        _ = snapshots[0].images


def test_random_transform_keeps_shape_and_varies_with_the_draw():
    pixels = torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(3)
    first, second = random_transform(pixels, generator), random_transform(pixels, generator)
    assert first.shape == pixels.shape and not torch.allclose(first, second)
    same = random_transform(pixels, generator, jitter=0, scale=0, degrees=0)
    assert torch.allclose(same, pixels, atol=1e-5)


def test_crop_and_resize_keeps_the_size_and_a_full_crop_is_the_image():
    pixels = torch.rand(1, 3, 50, 50)
    assert crop_and_resize(pixels, 0.9, torch.Generator().manual_seed(0)).shape == pixels.shape
    assert torch.allclose(crop_and_resize(pixels, 1.0, torch.Generator()), pixels, atol=1e-5)


def test_from_image_and_to_pil_round_trip(tmp_path):
    pixels = torch.rand(1, 3, 20, 30, generator=torch.Generator().manual_seed(0))
    to_pil(pixels)[0].save(tmp_path / "x.png")
    back = from_image(tmp_path / "x.png")
    assert back.shape == (1, 3, 20, 30) and (back - pixels).abs().max() <= 1 / 255
    assert from_image(tmp_path / "x.png", size=40).shape == (1, 3, 40, 60)


def test_from_image_of_a_long_photo_keeps_its_pixels_bounded(tmp_path):
    Image.new("RGB", (20_000, 300), (200, 30, 30)).save(tmp_path / "long.png")
    pixels = from_image(tmp_path / "long.png", size=64)
    assert pixels.shape[-1] * pixels.shape[-2] <= 2 * 64 * 64 and min(pixels.shape[-2:]) >= 32


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_steps, 0, "steps must be"),
        (check_steps, 10**6, "steps must be"),
        (check_steps, 2.5, "steps must be"),
        (check_image_size, 8, "image size must be"),
        (check_image_size, 5000, "image size must be"),
        (check_learning_rate, 0, "learning rate"),
        (check_learning_rate, float("nan"), "learning rate"),
    ],
)
def test_work_size_and_rate_checks_name_the_problem(check, value, message):
    with pytest.raises(OneNetError, match=message):
        check(value)


def test_every_image_optimisation_runs_under_the_caller_s_inference_mode_and_leaves_the_model_as_it_was(tiny_net):
    photo, other = draw_shape("red", "circle", 3), draw_shape("blue", "square", 1)
    runs = {
        "visualize": lambda: tiny_net.visualize(imagenet_class=1, steps=2, size=64, progress=False),
        "imagine": lambda: tiny_net.imagine("a red circle", steps=2, size=64, progress=False),
        "dream": lambda: tiny_net.dream(photo, steps=2, octaves=1, size=64, progress=False),
        "style": lambda: tiny_net.style(photo, other, steps=2, size=64, progress=False),
    }
    flags = {name: p.requires_grad for name, p in tiny_net.model.named_parameters()}
    assert any(flags.values())  # the decoder's weights require gradients, as a model being fine-tuned would
    with torch.inference_mode():
        for name, run in runs.items():
            assert run().images[0].height == 64, name
            assert torch.is_inference_mode_enabled(), name
            for weight, parameter in tiny_net.model.named_parameters():  # the caller's model is left as it was
                assert (parameter.requires_grad, parameter.grad) == (flags[weight], None), (name, weight)
        modes = [
            (torch.is_inference_mode_enabled(), torch.is_grad_enabled())
            for _ in imagine_steps(tiny_net.model, tiny_net.processor, "a red circle", steps=2, size=64)
        ]
    assert modes == [(True, False)] * 2  # between steps the caller has its own mode back


@pytest.mark.parametrize(
    "use, arguments",
    [
        ("visualize", dict(imagenet_class=207)),
        ("imagine", dict(text="a red circle")),
        ("dream", dict(image=np.full((40, 60, 3), 128, np.uint8))),
        ("style", dict(content=np.full((40, 60, 3), 128, np.uint8), style_image=np.zeros((40, 40, 3), np.uint8))),
    ],
)
def test_each_optimisation_streams_its_steps_and_ends_where_the_plain_call_ends(tiny_net, use, arguments):
    """`OneNet.<use>_steps` is the public stream the Space shows: a snapshot per step, images every
    `snapshot_every` steps and at the last; its last snapshot is what `OneNet.<use>` returns."""
    options = dict(steps=4, size=64)
    snapshots = list(getattr(tiny_net, f"{use}_steps")(**arguments, **options, snapshot_every=2))
    assert [s.step for s in snapshots] == [1, 2, 3, 4] and {s.steps for s in snapshots} == {4}
    assert [s.pixels is not None for s in snapshots] == [False, True, False, True]
    final = getattr(tiny_net, use)(**arguments, **options, progress=False)
    np.testing.assert_array_equal(np.asarray(final.images[0]), np.asarray(snapshots[-1].images[0]))
    with pytest.raises(TypeError, match="unexpected keyword argument 'stepz'"):
        getattr(tiny_net, f"{use}_steps")(**arguments, stepz=4)  # the plain method's parameters, checked at the call
    with pytest.raises(TypeError, match="multiple values"):
        getattr(tiny_net, f"{use}_steps")(*arguments.values(), **arguments)
