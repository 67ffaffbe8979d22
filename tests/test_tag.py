"""Tagging (use 2): vocabulary, ImageNet labels, tag head, and the precision measure."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from onenet_hf import OneNetConfig, OneNetModel, build_tokenizer
from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import tag_precision
from onenet_hf.language.label_words import imagenet_label_stems, imagenet_labels
from onenet_hf.language.word_vectors import normalize_word, stopwords
from onenet_hf.uses.tag import Tagger, tag, tag_vocabulary, tag_word_features
from tests.conftest import draw_shape


def test_tag_vocabulary_has_no_stop_words_and_one_word_per_stem():
    words = tag_vocabulary(5000)
    assert not set(words) & stopwords()
    assert all(w.isalpha() and len(w) >= 3 for w in words)
    assert len({normalize_word(w) for w in words}) == len(words)
    assert "ocean" in words and "street" in words and "the" not in words


def test_words_the_captions_used_bring_the_decoder_embedding_others_only_glove():
    tokenizer = build_tokenizer(["a red circle", "a blue square"], min_frequency=1)
    model = OneNetModel(OneNetConfig(vocab_size=len(tokenizer), hidden_size=16, word_embedding_size=8)).eval()
    with torch.no_grad():
        features = tag_word_features(model, tokenizer, ["circle", "ocean"])
    assert features.shape == (2, 50 + 1 + 8 + 1)
    embedding = model.get_input_embeddings().weight[tokenizer.convert_tokens_to_ids("circle")]
    assert torch.equal(features[0, 51:59], embedding) and features[0, -1] == 1
    assert not features[1, 51:].any()  # "ocean" is not a caption word: zeros and flag 0
    assert float(features[0, :50].norm()) == pytest.approx(1.0, abs=1e-5)
    assert model.get_tag_word_embeds(features).shape == (2, model.config.tag_embedding_size)


def scripted_tagger(captions: list[str], caption_samples: int) -> Tagger:
    """A Tagger whose decoder writes image i's caption `captions[i]`, whatever the sample."""
    tokenizer = build_tokenizer(["a red circle", "two red circles", "a blue square"], min_frequency=1)
    model = OneNetModel(OneNetConfig(vocab_size=len(tokenizer), hidden_size=16, word_embedding_size=8)).eval()
    scripts = [tokenizer(c)["input_ids"][1:] for c in captions]  # without BOS, EOS last

    def initial_state(image_embeds):
        return (torch.arange(len(image_embeds)), torch.zeros(len(image_embeds), dtype=torch.long))

    def decoder_step(tokens, state):
        item, position = state
        next_ids = torch.tensor([scripts[i][min(p, len(scripts[i]) - 1)] for i, p in zip(item, position, strict=True)])
        log_probs = torch.full((len(tokens), len(tokenizer)), -1e9).scatter(1, next_ids[:, None], 0.0)
        return log_probs, (item, position + 1)

    model.initial_state, model.decoder_step = initial_state, decoder_step
    return Tagger(model, tokenizer, ["circle", "square", "red", "ocean"], caption_samples, imagenet_weight=0)


def test_caption_chances_join_the_forms_of_a_word_and_stay_probabilities():
    tagger = scripted_tagger(["two red circles red", "a blue square"], caption_samples=4)
    chances = tagger.caption_chances(torch.zeros(2, 16))
    expected = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])  # "circles" counts for "circle"
    assert torch.allclose(chances, expected, atol=1e-5)


def test_sampled_captions_reorder_the_head_and_zero_samples_leave_it_alone():
    images = torch.randn(2, 16)
    head_only = scripted_tagger(["a red circle", "a blue square"], caption_samples=0)
    assert torch.equal(head_only.scores(images), head_only.head_log_probs(images))
    tagger = scripted_tagger(["a red circle", "a blue square"], caption_samples=10)
    tagger.caption_weight = 100.0  # the sampled captions dominate the untrained head
    assert {w.word for w in tagger.top_words(images, 2)[0]} == {"red", "circle"}
    assert tagger.top_words(images, 1)[1][0].word == "square"
    for bad in (-1, 1001):
        with pytest.raises(OneNetError, match="caption_samples must be an integer from 0 to 1,000"):
            scripted_tagger(["a red circle"], caption_samples=bad)


def label_tagger(words: list[str], imagenet_weight: float) -> Tagger:
    """A tagger over `words` whose model takes pooled features to be the ImageNet logits themselves."""
    tokenizer = build_tokenizer(["a red circle"], min_frequency=1)
    model = OneNetModel(OneNetConfig(vocab_size=len(tokenizer), hidden_size=16, word_embedding_size=8)).eval()
    model.get_imagenet_logits = lambda pooled: pooled
    return Tagger(model, tokenizer, words, caption_samples=0, imagenet_weight=imagenet_weight)


def test_every_name_of_an_imagenet_class_votes_for_its_words():
    stems = imagenet_label_stems()
    assert {"egyptian", "cat"} <= stems[285] and "tabbi" in stems[281] and "sheep" not in stems[348]  # ram, tup
    cat_classes = [c for c, s in enumerate(stems) if "cat" in s]
    assert {281, 282, 283, 284, 285} <= set(cat_classes)
    tagger = label_tagger(["cat", "smile", "ram"], imagenet_weight=1.0)
    logits = torch.randn(2, 1000)
    chances = tagger.label_chances(logits)
    probabilities = logits.softmax(-1)
    assert torch.allclose(chances[:, 0], probabilities[:, cat_classes].sum(1))
    assert torch.equal(chances[:, 1], torch.zeros(2))  # no class has "smile" in a name
    assert torch.allclose(chances[:, 2], probabilities[:, [c for c, s in enumerate(stems) if "ram" in s]].sum(1))


def test_imagenet_labels_move_their_words_up_and_need_the_pooled_features():
    images, logits = torch.randn(1, 16), torch.full((1, 1000), -20.0)
    logits[0, 348] = 20.0  # the classifier is sure it sees a ram
    head_alone = label_tagger(["cat", "smile", "ram"], imagenet_weight=0)
    with_labels = label_tagger(["cat", "smile", "ram"], imagenet_weight=1.0)
    with_labels.model.load_state_dict(head_alone.model.state_dict())
    with_labels.word_embeds = head_alone.word_embeds
    head_scores = head_alone.scores(images)
    assert torch.allclose(
        with_labels.scores(images, logits) - head_scores, torch.tensor([[-6.9078, -6.9078, 0.0]]), atol=1e-3
    )
    assert with_labels.top_words(images, 1, logits)[0][0].word == "ram"
    with pytest.raises(OneNetError, match="the ImageNet term needs the images' pooled_features"):
        with_labels.scores(images)
    for name in ("caption_weight", "imagenet_weight"):
        for bad in (-1, float("inf"), float("nan"), True, "2"):
            with pytest.raises(OneNetError, match=f"{name} must be a number from 0 \\(off\\) to 100"):
                Tagger(with_labels.model, with_labels.tokenizer, ["cat"], 0, **{name: bad})


def test_imagenet_labels_ship_with_the_package():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[0] == "tench" and labels[284] == "Siamese cat"


def test_tag_precision_compares_stems():
    references = [["Two dogs are running on the grass ."]]
    assert tag_precision([["dog", "run", "grass", "cat"]], references) == 0.75
    assert tag_precision([["man", "children"]], [["Two men and a child ."]]) == 1.0


@pytest.mark.slow
def test_tags_of_a_shape_name_its_colour_or_shape(shapes_net):
    tags = shapes_net.tag([draw_shape("red", "circle", 1), draw_shape("blue", "square", 2)], k=5)
    assert len(tags) == 2
    for image_tags, expected in zip(tags, ({"red", "circle"}, {"blue", "square"}), strict=True):
        words = [t.word for t in image_tags.words]
        assert len(words) == 5 and expected & set(words), words
        assert [t.score for t in image_tags.words] == sorted((t.score for t in image_tags.words), reverse=True)
        assert len(image_tags.imagenet) == 5 and 0 < sum(t.score for t in image_tags.imagenet) <= 1.0001


@pytest.mark.slow
def test_bad_k_and_bad_image_are_clear_errors(shapes_net, tmp_path):
    with pytest.raises(OneNetError, match="k must be an integer from 1 to 1,000, got 0"):
        shapes_net.tag(Image.new("RGB", (64, 64)), k=0)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(OneNetError, match="not an image"):
        tag(shapes_net.model, shapes_net.processor, str(tmp_path / "broken.jpg"))
