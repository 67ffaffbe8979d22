"""Per-query outcomes agree with the corpus figures `onenet evaluate` reports: per-image CIDEr, retrieval ranks."""

from __future__ import annotations

import pytest
import torch

from onenet_hf.errors import OneNetError
from onenet_hf.evaluation import caption_metrics, cider_per_image, retrieval_metrics, retrieval_ranks

REFERENCES = [
    ["a dog runs on the grass", "a brown dog is running", "the dog plays outside"],
    ["two children play in the water", "kids splash at the beach", "children are swimming"],
    ["a man rides a bike down the road", "a cyclist on a street", "a person riding a bicycle"],
]


def test_per_image_cider_averages_to_the_corpus_figure_and_ranks_the_right_caption_first():
    captions = ["a dog is running on the grass", "a man is standing", "a man rides a bike down the road"]
    scores = cider_per_image(REFERENCES, captions)
    assert scores.shape == (3,)
    assert scores.mean() == pytest.approx(caption_metrics(REFERENCES, captions, ("CIDEr",))["CIDEr"], abs=1e-12)
    assert scores[2] > scores[0] > scores[1]  # a reference word for word, then a near one, then a wrong one


def test_per_image_cider_refuses_unpaired_lists():
    with pytest.raises(OneNetError, match="3 reference sets but 2 hypotheses"):
        cider_per_image(REFERENCES, ["a dog", "a man"])


def test_retrieval_ranks_are_the_outcomes_recall_counts():
    similarity = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.8, 0.5], [0.7, 0.1, 0.3], [0.1, 0.2, 0.3]])
    owners = torch.tensor([0, 1, 2, 2])
    text_ranks, image_ranks = retrieval_ranks(similarity, owners)
    assert text_ranks.tolist() == [0, 0, 1, 0]  # text 2 scores image 0 above its own
    assert image_ranks.tolist() == [0, 0, 1]  # image 2's best texts (0.3) score below text 1 (0.5)
    metrics = retrieval_metrics(similarity, owners)
    assert metrics["text_to_image_R@1"] == 75.0 and metrics["image_to_text_R@1"] == pytest.approx(100 * 2 / 3)


def test_caption_objects_reads_two_word_names_first_and_synonyms_as_their_category():
    from onenet_hf.evaluation import caption_objects

    assert caption_objects("a man eats a hot dog") == {"person", "hot dog"}
    assert caption_objects("two puppies and a teddy bear on a sofa") == {"dog", "teddy bear", "couch"}
    assert caption_objects("women riding motorbikes") == {"person", "motorcycle"}
    assert caption_objects("a sunny day") == set()


def test_object_metrics_count_invented_objects_and_recall():
    from onenet_hf.evaluation import object_metrics

    captions = ["a dog on a couch", "a cat", "a man"]
    objects = [frozenset({"couch", "cat"}), frozenset({"cat", "bowl"}), frozenset({"person"})]
    metrics = object_metrics(captions, objects)
    assert metrics["CHAIRi_%"] == pytest.approx(100 * 1 / 4)  # dog invented; couch, cat, person present
    assert metrics["CHAIRs_%"] == pytest.approx(100 * 1 / 3)
    assert metrics["object_recall_%"] == pytest.approx(100 * 3 / 5)


def test_one_evaluator_per_task_and_options_by_keyword_only():
    from onenet_hf.evaluation import EVALUATORS, evaluate
    from onenet_hf.options import EVALUATION_TASKS

    names = {"captions": "CaptionEvaluator", "tags": "TagEvaluator", "analogy": "AnalogyEvaluator"}
    assert {task: EVALUATORS[task].__name__ for task in EVALUATION_TASKS} == names | {"retrieval": "RetrievalEvaluator"}
    with pytest.raises(OneNetError, match="the tags task takes no beam_size; its options: data_dir, split"):
        evaluate(None, "tags", data_dir="x", beam_size=3)
    with pytest.raises(TypeError):
        EVALUATORS["captions"]("data", "dev", "flickr8k", "cache")  # options after the data are keyword-only
