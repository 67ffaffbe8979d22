"""bench/speed/embed_speed.py: every batch shape is met before the clock starts, so a compiled encoder's
compilation (once per shape) is counted as warm-up and never as speed."""

from __future__ import annotations

import pytest
import torch

from bench.speed import embed_speed


class ShapeRecorder:
    """An encoder that notes each batch size it is given and returns the pixels' mean and max as its two outputs."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def __call__(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.batches.append(len(pixels))
        return pixels.mean((2, 3)), pixels.amax((2, 3))


@pytest.mark.parametrize(("images", "warmup_batches"), [(70, [32, 6]), (64, [32])])
def test_the_warm_up_meets_each_batch_shape_before_timing(images, warmup_batches):
    pixels = torch.randn(images, 3, 4, 4)
    encoder = ShapeRecorder()
    rate, warmup_s, embeds, pooled = embed_speed.timed(encoder, pixels, batch_size=32)
    timed_batches = [32] * (images // 32) + ([images % 32] if images % 32 else [])
    assert encoder.batches == warmup_batches + timed_batches
    assert rate > 0 and warmup_s >= 0
    torch.testing.assert_close(embeds, pixels.mean((2, 3)))
    torch.testing.assert_close(pooled, pixels.amax((2, 3)))
