"""The shipped checkpoint's answers for every core use (captions, tags, similar words, analogies, similar images,
each search method), against stored reference values, as open_clip's tests compare against stored outputs: a
refactor that changes what a user gets fails here. `python tests/test_use_snapshot.py` rewrites the reference
after a change meant to alter the answers (say why in the commit)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from onenet_hf import OneNet
from onenet_hf.data.example_photos import example_gallery, example_photos
from onenet_hf.options import SEARCH_METHODS

CHECKPOINT = Path(__file__).parents[1] / "checkpoints" / "onenet-flickr8k"
REFERENCE = Path(__file__).parent / "data" / "use_snapshot.json"
QUERIES = ("a cat", "a rocket", "a cup of coffee", "a man on a motorcycle")
SCORE_TOLERANCE = 2e-3  # CPUs differ in the last float bits; words, labels and order must not


def use_snapshot(index_folder: Path) -> dict[str, list]:
    """Every answer as plain JSON: (text, score) pairs, best first, keyed by use and input."""
    net = OneNet.from_pretrained(CHECKPOINT, backend="torch")
    photos = example_photos()
    answers: dict[str, list] = {}
    for photo, caption in zip(photos, net.caption(photos), strict=True):
        answers[f"caption {photo.name}"] = [[caption.text, caption.score]]
    for photo, tags in zip(photos, net.tag(photos), strict=True):
        answers[f"tag {photo.name}"] = [[t.word, t.score] for t in [*tags.words, *tags.imagenet]]
    for word, space in (("dog", "learned"), ("dog", "glove"), ("beach", "learned")):
        answers[f"similar_words {word} {space}"] = [[w.word, w.score] for w in net.similar_words(word, 5, space)]
    for space in ("learned", "glove"):
        nearest = net.analogy("man", "woman", "boy", 5, space)
        answers[f"analogy man woman boy {space}"] = [[w.word, w.score] for w in nearest]
    index = net.build_index(example_gallery(), index_folder)
    for photo in photos:
        matches = net.similar_images(index, photo, k=4)
        answers[f"similar_images {photo.name}"] = [[Path(m.path).name, m.score] for m in matches]
    for method in SEARCH_METHODS:
        for query in QUERIES:
            matches = net.search(index, query, k=4, method=method)
            answers[f"search {method} {query}"] = [[Path(m.path).name, m.score] for m in matches]
    return answers


@pytest.mark.slow
def test_every_use_answers_as_the_reference(tmp_path: Path) -> None:
    reference = json.loads(REFERENCE.read_text())
    answers = use_snapshot(tmp_path / "index")
    assert len(reference) == 39 and answers.keys() == reference.keys()
    for key, expected in reference.items():
        got = answers[key]
        assert len(got) == len(expected), key
        for (_, score), (_, want) in zip(got, expected, strict=True):
            assert math.isclose(score, want, abs_tol=SCORE_TOLERANCE), (key, score, want)
        assert tie_groups(got) == tie_groups(expected), key


def tie_groups(answers: list) -> list[set[str]]:
    """The texts in order, those whose scores are within the tolerance of the previous one in one set: equal
    scores (two copies of a photo) may come in either order on another CPU."""
    groups: list[set[str]] = []
    for i, (text, score) in enumerate(answers):
        if i and math.isclose(score, answers[i - 1][1], abs_tol=SCORE_TOLERANCE):
            groups[-1].add(text)
        else:
            groups.append({text})
    return groups


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        answers = use_snapshot(Path(folder) / "index")
    REFERENCE.write_text(json.dumps(answers, indent=1) + "\n")
    print(f"{len(answers)} answers written to {REFERENCE}", file=sys.stderr)
