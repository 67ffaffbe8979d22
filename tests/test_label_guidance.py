"""The ImageNet label words and what they do to captions and search, on made-up classifier outputs."""

from __future__ import annotations

import pytest
import torch

from onenet_hf.errors import OneNetError
from onenet_hf.label_guidance import (
    check_label_threshold,
    extended_step,
    extended_words,
    label_guidance,
    novel_label_words,
    proxy_token_ids,
)
from onenet_hf.language.label_words import (
    animal_label_words,
    imagenet_caption_words,
    label_evidence,
    label_words,
    query_label_columns,
)

TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]", "a", "cat", "cats", "dog", "dogs", "puppy", "horse", "on", "grass", "cup")


def one_hot(*labels: int, chance: float = 0.9) -> torch.Tensor:
    """Classifier probabilities with `chance` on each given class of its row, the rest spread evenly."""
    probabilities = torch.full((len(labels), 1000), (1 - chance) / 999)
    probabilities[range(len(labels)), list(labels)] = chance
    return probabilities


def test_the_map_names_everyday_words_for_classes():
    words = imagenet_caption_words()
    assert len(words) == 1000
    assert words[285] == "cat" and words[281] == "cat"  # Egyptian cat, tabby
    assert words[207] == "dog" and words[151] == "dog"  # golden retriever, Chihuahua
    assert words[967] == "coffee" and words[812] == "rocket" and words[670] == "motorcycle"
    assert {"dog", "cat", "horse"} <= animal_label_words() and "cup" not in animal_label_words()


def test_novel_words_get_fixed_ids_after_the_vocabulary_and_borrow_a_known_label_word():
    novel = novel_label_words(TOKENS)
    assert "zebra" in novel and "cat" not in novel
    assert extended_words(TOKENS)[len(TOKENS) + novel.index("zebra")] == "zebra"
    proxies = proxy_token_ids(TOKENS)
    assert len(proxies) == len(novel)
    assert {TOKENS[i] for i in proxies} <= set(label_words())  # each proxy is a known label word


def test_the_extended_step_reads_and_scores_a_novel_word_as_its_proxy():
    def step(input_ids, state):
        return torch.log_softmax(torch.arange(len(TOKENS), dtype=torch.float).repeat(len(input_ids), 1), -1), state

    seen = []
    run = extended_step(lambda ids, state: (seen.append(ids.clone()), step(ids, state))[1], TOKENS)
    zebra = len(TOKENS) + novel_label_words(TOKENS).index("zebra")
    log_probs, _ = run(torch.tensor([zebra, 4]), ())
    proxy = proxy_token_ids(TOKENS)[novel_label_words(TOKENS).index("zebra")]
    assert seen[0].tolist() == [proxy, 4]
    assert log_probs.shape[1] == len(extended_words(TOKENS))
    assert log_probs[0, zebra] == log_probs[0, proxy]


def test_a_confident_label_becomes_a_constraint_and_absent_animals_are_penalised():
    guidance = label_guidance(TOKENS, one_hot(285, 968), threshold=0.3)  # Egyptian cat; cup
    cat, dog, puppy, cup = (TOKENS.index(w) for w in ("cat", "dog", "puppy", "cup"))
    assert guidance.words == [["cat"], ["cup"]]
    assert guidance.constraints[0] == [(cat, TOKENS.index("cats"))]
    assert guidance.token_bias[0, cat] == 0 and guidance.token_bias[0, dog] < -3  # no dog class is likely
    assert guidance.token_bias[0, puppy] == guidance.token_bias[0, dog]
    assert guidance.token_bias[1, cup] == 0
    assert torch.isinf(guidance.token_bias[0, len(TOKENS) :]).all()  # novel words stay unsaid unconstrained


def test_an_unsure_classifier_constrains_nothing_and_a_novel_word_takes_its_proxys_place():
    unsure = label_guidance(TOKENS, one_hot(285, chance=0.2), threshold=0.3)
    assert unsure.constraints == [[]]
    zebra = imagenet_caption_words().index("zebra")
    guided = label_guidance(TOKENS, one_hot(zebra), threshold=0.3)
    zebra_id = len(TOKENS) + novel_label_words(TOKENS).index("zebra")
    proxy = proxy_token_ids(TOKENS)[novel_label_words(TOKENS).index("zebra")]
    assert guided.constraints == [[(zebra_id,)]] and guided.token_bias[0, zebra_id] == 0
    assert torch.isinf(guided.token_bias[0, proxy])
    assert extended_words(TOKENS)[zebra_id] == "zebra"


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), float("inf"), True, "0.3"])
def test_bad_thresholds_are_refused(threshold):
    with pytest.raises(OneNetError, match="imagenet_labels must be a chance from 0"):
        check_label_threshold(threshold)


def test_label_evidence_backs_the_photo_that_shows_the_query_words():
    columns = query_label_columns("two cats on a sofa")
    assert [label_words()[c] for c in columns] == ["cat"]
    assert query_label_columns("a sunny afternoon") == []
    evidence = label_evidence(one_hot(285, 967), columns)  # a cat photo, an espresso photo
    assert evidence[0] > -0.2 and evidence[1] < -4
    assert label_evidence(one_hot(285), []).tolist() == [0.0]
