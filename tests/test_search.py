"""Describe to search (use 6): retrieval, decoder re-ranking, inversion, GloVe mean; bad texts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onenet_hf import OneNetError
from onenet_hf.evaluation.retrieval import caption_log_priors, rerank_texts
from onenet_hf.language.word_vectors import UnknownWordError
from onenet_hf.uses.search import SEARCH_METHODS, check_method, rerank, text_token_ids
from tests.conftest import COLOURS, SHAPES, draw_shape, write_shape_gallery

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shapes_index(shapes_net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gallery")
    write_shape_gallery(folder, 500)
    return shapes_net.build_index(folder, folder / "index")


@pytest.mark.parametrize("method", SEARCH_METHODS)
def test_each_method_returns_k_gallery_images_in_the_order_of_their_scores(shapes_net, shapes_index, method):
    matches = shapes_net.search(shapes_index, "a red circle", k=4, method=method)
    assert len(matches) == 4 and all(m.path in shapes_index.paths for m in matches)
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= m.cosine <= 1.0 for m in matches)
    if method != "reranked":
        assert all(m.score == m.cosine for m in matches)


def test_reranked_scores_are_the_decoders_and_retrieval_is_the_order_without_it(shapes_net, shapes_index):
    model, text = shapes_net.model, "a blue square"
    retrieval = shapes_net.search(shapes_index, text, k=12, method="retrieval")
    reranked = shapes_net.search(shapes_index, text, k=12, method="reranked")
    assert {m.path for m in reranked} == {m.path for m in retrieval}  # the whole gallery, in two orders
    cosine = {m.path: m.cosine for m in retrieval}
    assert all(m.cosine == pytest.approx(cosine[m.path], abs=1e-6) for m in reranked)
    rows = [shapes_index.paths.index(m.path) for m in reranked]
    ids = text_token_ids(shapes_net.processor, text, model.config.max_caption_length)
    embeds = torch.from_numpy(np.asarray(shapes_index.image_embeds[rows], dtype=np.float32))
    with torch.inference_mode():
        expected = model.get_rerank_scores(ids, embeds, torch.tensor([m.cosine for m in reranked]))
    assert [m.score for m in reranked] == pytest.approx(expected.tolist(), abs=1e-4)


def test_rerank_orders_only_the_top_candidates_by_the_decoder(shapes_net):
    model = shapes_net.model
    torch.manual_seed(0)
    embeds = model.image_norm(torch.randn(10, model.config.hidden_size)).detach()
    cosines = torch.linspace(0.9, 0.0, 10)
    ids = text_token_ids(shapes_net.processor, "a red circle", model.config.max_caption_length)
    rows, scores = rerank(model, ids, cosines, embeds, top=4)
    assert sorted(rows.tolist()) == [0, 1, 2, 3]  # the 4 best cosines, nothing else
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)
    with torch.inference_mode():
        assert scores.tolist() == pytest.approx(model.get_rerank_scores(ids, embeds[rows], cosines[rows]).tolist())


def test_caption_log_prior_is_the_log_mean_likelihood_over_the_prior_images(shapes_net):
    model, processor = shapes_net.model, shapes_net.processor
    torch.manual_seed(0)
    images = model.image_norm(torch.randn(3, model.config.hidden_size)).detach()
    ids = [text_token_ids(processor, text, 24) for text in ("a red circle", "the big green triangle")]
    with torch.inference_mode():
        each = torch.stack([model.caption_log_likelihood(ids, image.expand(2, -1)) for image in images])
        priors = caption_log_priors(model, [ids[0], None, ids[1]], images, batch_size=1)
    expected = each.exp().mean(0).log()
    assert priors.tolist() == pytest.approx([expected[0].item(), 0.0, expected[1].item()], abs=1e-5)


def test_rerank_texts_orders_the_top_captions_by_cosine_and_information(shapes_net):
    """An image's captions: the decoder's pointwise mutual information lifts its own shape above a closer cosine,
    and a caption it cannot read keeps its scaled cosine."""
    model, processor, texts = shapes_net.model, shapes_net.processor, ("a red circle", "a blue square")
    with torch.inference_mode():
        shapes = [draw_shape("red", "circle", 7), draw_shape("blue", "square", 8)]
        pixels = processor.image_processor(shapes, return_tensors="pt")["pixel_values"]
        red, blue = model.get_image_features(pixels).split(1)
    ids = [text_token_ids(processor, text, 24) for text in texts] + [None, None]
    cosines = torch.tensor([0.30, 0.35, 0.9, 0.0])  # the blue caption and an unreadable one are closer
    with torch.inference_mode():
        priors = caption_log_priors(model, ids, torch.cat([red, blue]))
        rows, scores = rerank_texts(model, ids, cosines, red, priors, top=3)
        information = model.caption_log_likelihood(ids[:2], red.expand(2, -1)) - priors[:2]
    assert sorted(rows.tolist()) == [0, 1, 2]  # the 3 best cosines, nothing else
    assert rows.tolist().index(0) < rows.tolist().index(1)  # the red caption beats the closer blue one
    scale, weight = model.retrieval_head.scale().item(), model.config.text_rerank_weight
    expected = {0: scale * 0.30 + weight * information[0].item(), 1: scale * 0.35 + weight * information[1].item()}
    expected[2] = scale * 0.9
    assert scores.tolist() == pytest.approx([expected[row] for row in rows.tolist()], abs=1e-4)
    assert scores.tolist() == sorted(scores.tolist(), reverse=True)


def test_reranked_search_finds_the_described_shape(shapes_net, shapes_index):
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    hits = [shapes_net.search(shapes_index, f"a {c} {s}", k=3)[0].path for c, s in pairs]
    found = sum(path.endswith(f"{c}_{s}.png") for path, (c, s) in zip(hits, pairs, strict=True))
    assert found >= 6, hits  # at least half of the 12 descriptions find their image first (chance: 1)


def test_inversion_makes_the_description_likely(shapes_net):
    model, processor = shapes_net.model, shapes_net.processor
    ids = [text_token_ids(processor, "a green triangle", model.config.max_caption_length)]
    inverted = model.invert_captions(ids, restarts=4, steps=30)
    random_start = model.image_norm(torch.randn(1, model.config.hidden_size))
    with torch.inference_mode():
        assert model.caption_log_likelihood(ids, inverted) > model.caption_log_likelihood(ids, random_start)


def test_a_one_word_query_works_and_an_over_long_one_is_refused_as_caption_refuses_it(shapes_net, shapes_index):
    assert len(shapes_net.search(shapes_index, "triangle", k=2)) == 2
    with pytest.raises(OneNetError, match="the text has 20,000 characters; give at most 1,000"):
        shapes_net.search(shapes_index, "red " * 5000, k=2)


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_text_is_refused(shapes_net, shapes_index, text):
    with pytest.raises(OneNetError, match="the text is empty"):
        shapes_net.search(shapes_index, text)


def test_unknown_words_are_explained(shapes_net, shapes_index):
    with pytest.raises(UnknownWordError, match="caption vocabulary"):
        shapes_net.search(shapes_index, "猫がいる", method="invert")
    with pytest.raises(UnknownWordError, match="no words"):
        shapes_net.search(shapes_index, "猫がいる", method="glove")
    assert len(shapes_net.search(shapes_index, "猫がいる", k=2)) == 2  # MiniLM reads any text; no re-ranking


def test_unknown_method_and_bad_k_are_refused(shapes_net, shapes_index):
    with pytest.raises(OneNetError, match="unknown search method"):
        shapes_net.search(shapes_index, "a red circle", method="telepathy")
    with pytest.raises(OneNetError, match="k must be an integer from 1 to 1,000, got 0"):
        shapes_net.search(shapes_index, "a red circle", k=0)


def test_the_old_method_names_say_their_new_ones():
    with pytest.raises(OneNetError, match="`embed` is now `reranked`"):
        check_method("embed")
    with pytest.raises(OneNetError, match="`joint` is now `retrieval`"):
        check_method("joint")
