"""Similar words and analogies (uses 3 and 4), and the analogy evaluation's parity with gensim."""

from __future__ import annotations

import numpy as np
import pytest

from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import evaluate_analogies
from onenet_hf.language.word_vectors import UnknownWordError, glove_vectors
from onenet_hf.uses.words import analogy, learned_vectors, similar_words, solve_analogies
from onenet_hf.utils.ranking import MAX_K


@pytest.mark.parametrize("method", ["3cosadd", "3cosmul"])
def test_man_king_woman_gives_queen_in_glove(method):
    answers = analogy(glove_vectors(), "man", "king", "woman", k=3, method=method)
    assert answers[0].word == "queen"
    assert not {"man", "king", "woman"} & {a.word for a in answers}
    assert answers[0].score >= answers[1].score >= answers[2].score


@pytest.mark.parametrize("method", ["3cosadd", "3cosmul"])
def test_batched_analogies_equal_one_question_at_a_time(method):
    """The scratch buffers are reused across batches (the last one partial): no batch may see another's."""
    vectors = glove_vectors()
    questions = np.random.default_rng(0).integers(0, 2_000, size=(11, 3))
    top, scores = solve_analogies(vectors, questions, 2, method, restrict_vocab=2_000, batch_size=4)
    cosines = vectors.vectors[:2_000] @ vectors.vectors[:2_000].T
    for row, (a, b, c) in enumerate(questions):
        if method == "3cosadd":
            offset = vectors.vectors[b] - vectors.vectors[a] + vectors.vectors[c]
            expected = vectors.vectors[:2_000] @ (offset / np.linalg.norm(offset))
        else:
            shifted = (cosines[[a, b, c]] + 1) / 2
            expected = shifted[1] * shifted[2] / (shifted[0] + 1e-3)
        expected[[a, b, c]] = -np.inf
        assert list(top[row]) == list(np.argsort(-expected)[:2])
        np.testing.assert_allclose(scores[row], np.sort(expected)[::-1][:2], rtol=1e-5)


def test_similar_words_in_glove_and_multi_word_average():
    assert "sea" in [w.word for w in similar_words(glove_vectors(), "ocean", k=5)]
    words = [w.word for w in similar_words(glove_vectors(), "cat sofa", k=10)]
    assert "cat" not in words and "sofa" not in words and "couch" in words


@pytest.mark.slow
def test_similar_words_in_the_learned_space(shapes_net):
    vectors = learned_vectors(shapes_net.model, shapes_net.processor.tokenizer)
    assert "[PAD]" not in vectors and "red" in vectors
    result = similar_words(vectors, "red", k=3)
    assert len(result) == 3 and "red" not in [w.word for w in result]


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, 10**9])
def test_bad_k_is_refused(k):
    with pytest.raises(OneNetError, match=f"k must be an integer from 1 to 1,000, got {k}"):
        similar_words(glove_vectors(), "ocean", k=k)


@pytest.mark.slow
def test_a_k_beyond_the_vocabulary_returns_all_of_it(shapes_net):
    vectors = learned_vectors(shapes_net.model, shapes_net.processor.tokenizer)
    assert len(vectors) < MAX_K and len(similar_words(vectors, "red", k=MAX_K)) == len(vectors) - 1


def test_a_long_unknown_word_is_shortened_when_echoed():
    with pytest.raises(UnknownWordError) as error:
        similar_words(glove_vectors(), "q" * 10_000)
    assert str(error.value).startswith(f"{'q' * 40!r}… is not in the GloVe vocabulary") and len(str(error.value)) < 120


def test_unknown_word_is_a_clear_error():
    with pytest.raises(UnknownWordError, match="'kingg' is not in the GloVe vocabulary.*'king'"):
        analogy(glove_vectors(), "man", "kingg", "woman")


def test_unknown_method_is_a_clear_error():
    with pytest.raises(OneNetError, match="unknown analogy method"):
        analogy(glove_vectors(), "man", "king", "woman", method="3cosfoo")


def test_evaluation_matches_gensim_on_a_sample_of_the_google_set(tmp_path):
    pytest.importorskip("gensim", minversion="4.3")  # the dev extra's floor: KeyedVectors.add_vectors and friends
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    lines, section_lines, headers = [], 0, 0
    for line in open(datapath("questions-words.txt")).read().splitlines():
        if line.startswith(":"):
            lines.append(line)
            section_lines, headers = 0, headers + 1
        elif section_lines < 40:
            lines.append(line)
            section_lines += 1
    questions = tmp_path / "sample.txt"
    questions.write_text("\n".join(lines) + "\n")
    glove = glove_vectors()
    keyed = KeyedVectors(50)
    keyed.add_vectors(glove.words[:30_000], glove.vectors[:30_000])
    expected, sections = keyed.evaluate_word_analogies(str(questions), restrict_vocab=30_000)
    ours = evaluate_analogies(glove, questions, restrict_vocab=30_000)
    assert abs(ours["total"]["accuracy"] - expected) < 0.001
    assert ours["total"]["correct"] == len(sections[-1]["correct"])
    assert ours["total"]["questions"] == len(sections[-1]["correct"]) + len(sections[-1]["incorrect"])
    assert len(sections) - 1 == headers == 14  # every section of the Google set compared, none dropped
    for section in sections[:-1]:
        counted = ours[section["section"]]
        assert counted["correct"] == len(section["correct"]), section["section"]
        assert counted["questions"] == len(section["correct"]) + len(section["incorrect"]), section["section"]
