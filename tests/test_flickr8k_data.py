"""The real Flickr8k folder beside the repository (../shared), when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onenet_hf import read_flickr8k

FLICKR8K = Path(os.environ.get("ONENET_FLICKR8K", Path(__file__).resolve().parents[2] / "shared/datasets/flickr8k"))

pytestmark = [
    pytest.mark.data,
    pytest.mark.skipif(not FLICKR8K.is_dir(), reason=f"Flickr8k not found at {FLICKR8K}"),
]


@pytest.mark.parametrize(("split", "size"), [("train", 6000), ("dev", 1000)])
def test_splits_have_five_captions_per_image(split, size):
    examples = read_flickr8k(FLICKR8K, split)
    assert len(examples) == size
    assert all(len(e.captions) == 5 and all(e.captions) for e in examples)


def test_train_and_dev_do_not_overlap():
    train = {e.path for e in read_flickr8k(FLICKR8K, "train")}
    assert not train & {e.path for e in read_flickr8k(FLICKR8K, "dev")}
