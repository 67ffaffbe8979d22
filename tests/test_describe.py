"""Describe to search (use 6): embed with decoder re-ranking, inversion, GloVe mean; bad descriptions."""

from __future__ import annotations

import pytest
import torch

from onenet_hf.uses.describe import description_log_likelihood, description_token_ids, invert_descriptions
from onenet_hf.word_vectors import UnknownWordError
from tests.conftest import COLOURS, SHAPES, draw_shape

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes_index(shapes_net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    for k, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        draw_shape(colour, shape, 500 + k).save(folder / f"{colour}_{shape}.png")
    return shapes_net.build_index(folder, folder / "index")


@pytest.mark.parametrize("method", ["embed", "invert", "glove"])
def test_each_method_returns_k_gallery_images(shapes_net, shapes_index, method):
    matches = shapes_net.search(shapes_index, "a red circle", k=4, method=method)
    assert len(matches) == 4 and all(m.path in shapes_index.paths for m in matches)


def test_embed_finds_the_described_shape(shapes_net, shapes_index):
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    hits = [shapes_net.search(shapes_index, f"a {c} {s}", k=3)[0].path for c, s in pairs]
    found = sum(path.endswith(f"{c}_{s}.png") for path, (c, s) in zip(hits, pairs, strict=True))
    assert found >= 6, hits  # at least half of the 12 descriptions find their image first (chance: 1)


def test_inversion_makes_the_description_likely(shapes_net):
    model, processor = shapes_net.model, shapes_net.processor
    ids = [description_token_ids(processor, "a green triangle", model.config.max_caption_length)]
    inverted = invert_descriptions(model, ids, restarts=4, steps=30)
    random_start = model.image_norm(torch.randn(1, model.config.hidden_size))
    with torch.inference_mode():
        assert description_log_likelihood(model, ids, inverted) > description_log_likelihood(model, ids, random_start)


def test_one_word_and_very_long_queries_work(shapes_net, shapes_index):
    assert len(shapes_net.search(shapes_index, "triangle", k=2)) == 2
    assert len(shapes_net.search(shapes_index, "red " * 5000, k=2)) == 2


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_description_is_refused(shapes_net, shapes_index, text):
    with pytest.raises(ValueError, match="the description is empty"):
        shapes_net.search(shapes_index, text)


def test_unknown_words_are_explained(shapes_net, shapes_index):
    with pytest.raises(UnknownWordError, match="caption vocabulary"):
        shapes_net.search(shapes_index, "猫がいる", method="invert")
    with pytest.raises(UnknownWordError, match="no words"):
        shapes_net.search(shapes_index, "猫がいる", method="glove")
    assert len(shapes_net.search(shapes_index, "猫がいる", k=2, method="embed")) == 2  # MiniLM reads any text


def test_unknown_method_and_bad_k_are_refused(shapes_net, shapes_index):
    with pytest.raises(ValueError, match="unknown search method"):
        shapes_net.search(shapes_index, "a red circle", method="telepathy")
    with pytest.raises(ValueError, match="k must be an integer from 1 to 1,000, got 0"):
        shapes_net.search(shapes_index, "a red circle", k=0)
