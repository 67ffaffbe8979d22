"""`WordVectors`, GloVe loading, stems and stop-words."""

from __future__ import annotations

import numpy as np
import pytest

from onenet_hf.language.word_vectors import (
    UnknownWordError,
    WordVectors,
    content_words,
    glove_vectors,
    normalize_word,
)


def test_glove_has_400k_words_in_frequency_order():
    glove = glove_vectors()
    assert len(glove) == 400_000 and glove.vectors.shape == (400_000, 50)
    assert glove.words[:3] == ["the", ",", "."]
    assert np.allclose(np.linalg.norm(glove.vectors[:100], axis=1), 1.0, atol=1e-5)


def test_stems_join_plurals_and_verb_forms():
    assert normalize_word("Dogs") == normalize_word("dog")
    assert normalize_word("climbing") == normalize_word("climbs") == normalize_word("climb")
    assert normalize_word("grass") == "grass"
    assert normalize_word("Men") == normalize_word("man")
    assert normalize_word("firemen") == normalize_word("fireman")
    assert normalize_word("children") == normalize_word("child")
    assert normalize_word("people") == normalize_word("person")
    assert normalize_word("amen") != normalize_word("aman")


def test_content_words_drop_stop_words_but_keep_visual_ones():
    assert content_words("A dog is running in front of the fire") == ["dog", "running", "front", "fire"]


def test_unknown_word_suggests_close_spellings():
    vectors = WordVectors(["ocean", "sea", "river"], np.eye(3))
    with pytest.raises(UnknownWordError, match=r"'oceann' is not in .* did you mean 'ocean'"):
        vectors.ids(["oceann"])


@pytest.mark.parametrize("text", ["", "   ", "猫 と 犬", "!!! ???"])
def test_queries_without_words_are_refused(text):
    with pytest.raises(UnknownWordError, match="no words"):
        WordVectors(["a"], np.ones((1, 2))).query_words(text)


def test_stop_word_only_query_keeps_its_words():
    assert WordVectors(["a"], np.ones((1, 2))).query_words("the of") == ["the", "of"]
