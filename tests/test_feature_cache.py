"""The backbone feature cache: computed once, keyed by what determines it, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from onenet_hf import OneNetConfig, OneNetImageProcessor, OneNetModel
from onenet_hf.data.feature_cache import cached_backbone_features


@pytest.fixture(scope="module")
def model():
    return OneNetModel(OneNetConfig(vocab_size=8, hidden_size=8, word_embedding_size=8, decoder_hidden_size=8))


@pytest.fixture
def images(tmp_path):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (32, 32), (60 * i, 255 - 60 * i, 90)).save(paths[-1])
    return paths


class Interrupted(Exception):
    """Stands in for a killed process (pytest itself stops on a real KeyboardInterrupt)."""


class CountingBackbone:
    """Wraps the backbone's forward to count images and optionally fail after some batches."""

    def __init__(self, model, monkeypatch, fail_after=None):
        self.images, self.batches, self.forward = 0, 0, model.backbone.forward
        self.fail_after = fail_after
        monkeypatch.setattr(model.backbone, "forward", self)

    def __call__(self, pixel_values):
        if pixel_values.shape[0] > 1:  # the one-image probe of the output shape is not a batch
            if self.fail_after is not None and self.batches == self.fail_after:
                raise Interrupted
            self.batches += 1
            self.images += pixel_values.shape[0]
        return self.forward(pixel_values)


def test_features_are_computed_once(model, images, tmp_path, monkeypatch):
    processor = OneNetImageProcessor()
    first = np.array(cached_backbone_features(model, processor, images, tmp_path / "cache", batch_size=2))
    assert first.shape == (4, 1280, 9, 9) and first.dtype == np.float16
    with torch.no_grad():
        direct = model.backbone(processor(images[1], return_tensors="pt")["pixel_values"])[0].numpy()
    assert np.allclose(first[1], direct, atol=1e-2)
    counter = CountingBackbone(model, monkeypatch)
    again = cached_backbone_features(model, processor, images, tmp_path / "cache", batch_size=2)
    assert counter.images == 0 and np.array_equal(first, again)


def test_changed_preprocessing_or_file_gets_fresh_features(model, images, tmp_path):
    cached_backbone_features(model, OneNetImageProcessor(), images, tmp_path / "cache")
    smaller = OneNetImageProcessor(size={"height": 224, "width": 224})
    assert cached_backbone_features(model, smaller, images, tmp_path / "cache").shape == (4, 1280, 7, 7)
    Image.new("RGB", (32, 32), (0, 0, 0)).save(images[0])
    cached_backbone_features(model, OneNetImageProcessor(), images, tmp_path / "cache")
    assert len(list((tmp_path / "cache").iterdir())) == 3


def test_interrupted_extraction_resumes(model, images, tmp_path, monkeypatch):
    processor = OneNetImageProcessor()
    expected = np.array(cached_backbone_features(model, processor, images, tmp_path / "reference", batch_size=2))
    CountingBackbone(model, monkeypatch, fail_after=1)
    with pytest.raises(Interrupted):
        cached_backbone_features(model, processor, images, tmp_path / "cache", batch_size=2)
    monkeypatch.undo()
    counter = CountingBackbone(model, monkeypatch)
    resumed = cached_backbone_features(model, processor, images, tmp_path / "cache", batch_size=2)
    assert counter.images == 2
    assert np.array_equal(np.array(resumed), expected)


def test_computing_features_leaves_the_global_generator_alone(model, images, tmp_path):
    """A cold cache used to draw its DataLoader's seed from the global generator, shifting every later draw."""
    torch.manual_seed(0)
    before = torch.get_rng_state()
    cached_backbone_features(model, OneNetImageProcessor(), images, tmp_path / "cache", batch_size=2)
    assert torch.equal(torch.get_rng_state(), before)
