"""Maps (use 7): t-SNE maps of a gallery's images and of words, their labels, files, trustworthiness and errors.

On the tiny untrained model of `conftest.py` and a gallery of 12 drawn shapes: what is checked is the plumbing
(points, names, labels, seeds, files, checks), not how good the map of an untrained network looks.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from onenet_hf import GalleryIndex, OneNetError, UnknownWordError
from onenet_hf.cli import main
from onenet_hf.explore import embedding_map as maps
from onenet_hf.explore.embedding_map import MAP_METHODS, PNG_SIZE, EmbeddingMap, check_map_size
from onenet_hf.language.label_words import imagenet_labels
from onenet_hf.representations import ARRAYS
from tests.conftest import COLOURS, write_shape_gallery

ANIMALS_AND_CARS = ["dog", "cat", "puppy", "kitten", "horse", "car", "truck", "bus", "train", "bicycle"]


@pytest.fixture(scope="module")
def gallery(tiny_net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("map_gallery")
    write_shape_gallery(folder, 700)
    return tiny_net.build_index(folder, folder / "index")


@pytest.fixture(scope="module")
def image_map(tiny_net, gallery) -> EmbeddingMap:
    return tiny_net.embedding_map(gallery)


@pytest.fixture(scope="module")
def word_map(tiny_net) -> EmbeddingMap:
    return tiny_net.embedding_map(words=ANIMALS_AND_CARS, space="glove")


def test_an_image_map_has_a_point_per_image_named_by_file_and_labelled_by_top_imagenet_class(
    tiny_net, gallery, image_map
):
    assert image_map.kind == "images" and image_map.points.shape == (12, 2) and len(image_map) == 12
    assert np.isfinite(image_map.points).all()
    assert image_map.names == tuple(os.path.basename(p) for p in gallery.paths)
    assert image_map.paths == tuple(gallery.paths)
    expected = [tags.imagenet[0].word for tags in tiny_net.tag(list(gallery.paths), k=1, caption_samples=0)]
    assert list(image_map.labels) == expected  # from the stored pooled features, as tagging the images says
    assert all(label in imagenet_labels() for label in image_map.labels)
    assert image_map.hover[0] == f"{image_map.names[0]}\n{image_map.labels[0]}"
    assert image_map.perplexity == pytest.approx(11 / 3)  # min(30, (n - 1) / 3)
    assert "12 gallery images" in image_map.title and "top ImageNet class" in image_map.title
    assert image_map.settings == "t-SNE (openTSNE), perplexity 3.67, seed 0"


def test_tag_colouring_is_the_top_tag_of_the_tag_head_alone(tiny_net, gallery):
    tagged = tiny_net.embedding_map(gallery, color_by="tag")
    head_alone = dict(caption_samples=0, imagenet_weight=0)
    expected = [tags.words[0].word for tags in tiny_net.tag(list(gallery.paths), k=1, **head_alone)]
    assert list(tagged.labels) == expected
    assert "top tag" in tagged.title


@pytest.mark.parametrize("method", MAP_METHODS)
def test_the_same_seed_gives_the_same_map_and_another_seed_another(tiny_net, gallery, method):
    first = tiny_net.embedding_map(gallery, method=method, seed=3)
    again = tiny_net.embedding_map(gallery, method=method, seed=3)
    np.testing.assert_array_equal(first.points, again.points)
    if method == "opentsne":  # its PCA initialisation adds seeded jitter; scikit-learn's has no randomness
        assert not np.allclose(first.points, tiny_net.embedding_map(gallery, method=method, seed=4).points)
    assert first.method == method and first.seed == 3


def test_a_word_map_of_given_words_keeps_their_order_once_each(tiny_net, word_map):
    assert word_map.kind == "words" and word_map.names == tuple(ANIMALS_AND_CARS)
    assert word_map.points.shape == (10, 2) and word_map.paths == ()
    assert set(word_map.labels) == {"GloVe"}
    again = tiny_net.embedding_map(words=[" Dog", "dog", *ANIMALS_AND_CARS[1:], ""], space="glove")
    assert again.names == word_map.names
    np.testing.assert_array_equal(again.points, word_map.points)


def test_a_top_words_map_takes_the_most_frequent_alphabetic_words(tiny_net):
    glove = tiny_net.word_vectors("glove")
    top = tiny_net.embedding_map(top_words=30, space="glove")
    assert top.names == tuple([word for word in glove.words[:100] if word.isalpha()][:30])
    assert "," not in top.names and top.perplexity == pytest.approx(29 / 3)


def test_trustworthiness_is_high_for_the_map_and_low_for_a_shuffled_one(tiny_net):
    top = tiny_net.embedding_map(top_words=120, space="glove")
    shuffled = np.random.default_rng(0).permutation(top.points)
    assert top.trustworthiness(10) > 0.8
    assert maps.map_trustworthiness(top.vectors, shuffled, 10) < top.trustworthiness(10) - 0.2
    with pytest.raises(OneNetError, match="trustworthiness needs k from 1 to below half the points"):
        top.trustworthiness(60)


def test_the_figure_hovers_names_and_labels_and_writes_few_words_beside_their_points(image_map, word_map):
    figure = image_map.figure()
    hover = [text for trace in figure.data for text in trace.hovertext]
    assert sorted(hover) == sorted(text.replace("\n", "<br>") for text in image_map.hover)
    assert sum(len(trace.x) for trace in figure.data) == 12
    assert {trace.name for trace in figure.data} <= set(image_map.labels) | {"other"}
    words = word_map.figure()
    assert words.data[0].mode == "markers+text" and list(words.data[0].text) == list(word_map.names)
    thumbnails = figure.layout.images  # one inlined JPEG per image, centred on its point
    assert len(thumbnails) == 12 and not words.layout.images
    assert {(t.x, t.y) for t in thumbnails} == {tuple(map(float, p)) for p in image_map.points}
    assert all(t.source.startswith("data:image/jpeg;base64,") for t in thumbnails)


def test_label_groups_give_the_most_frequent_labels_colours_and_the_rest_other(monkeypatch, image_map):
    monkeypatch.setattr(maps, "MAX_LEGEND_LABELS", 1)
    groups = image_map.label_groups()
    assert [label for label, _, _ in groups][-1] == "other" and len(groups) <= 2
    assert sorted(np.concatenate([rows for _, _, rows in groups]).tolist()) == list(range(12))


def test_html_embeds_plotly_and_names_every_point(image_map, word_map, tmp_path):
    image_html = image_map.save(tmp_path / "images.html").read_text(encoding="utf-8")
    assert all(name in image_html for name in image_map.names)
    assert "<script src=" not in image_html and len(image_html) > 1_000_000  # plotly.js inside: opens offline
    word_html = word_map.save(tmp_path / "words.html").read_text(encoding="utf-8")
    assert all(f'"{word}"' in word_html for word in ANIMALS_AND_CARS)
    assert not list(tmp_path.glob("*.tmp"))


def test_png_maps_open_at_their_size_with_thumbnails_or_words(image_map, word_map, tmp_path):
    with Image.open(image_map.save(tmp_path / "images.png")) as png:
        assert png.format == "PNG" and png.size == (PNG_SIZE, PNG_SIZE)
        pixels = np.asarray(png.convert("RGB")).astype(int)
    for colour in ("yellow", "blue"):  # the shapes' own colours, in none of the map's palette: thumbnails drawn
        assert (np.abs(pixels - COLOURS[colour]).max(-1) < 12).sum() > 200
    with Image.open(word_map.save(tmp_path / "words.png", size=640)) as png:
        assert png.size == (640, 640)
        assert (np.asarray(png.convert("L")) < 80).sum() > 200  # dark text on white


def test_a_thumbnail_that_cannot_be_read_leaves_its_dot(image_map, tmp_path):
    moved = EmbeddingMap(**{**vars(image_map), "paths": (str(tmp_path / "gone.png"),) * len(image_map)})
    with Image.open(moved.save(tmp_path / "dots.png", size=400)) as png:
        assert png.size == (400, 400)


def test_bad_requests_are_one_clear_error_each(tiny_net, gallery, monkeypatch):
    cases = [
        (dict(index=gallery, perplexity=5), "too few points for perplexity 5: 12 gallery images"),
        (dict(index=gallery, perplexity=1), "perplexity must be a number of at least 2"),
        (dict(index=gallery, method="umap"), "unknown map method 'umap'"),
        (dict(index=gallery, color_by="colour"), "unknown colouring 'colour'"),
        (dict(index=gallery, seed=-1), "seed must be an integer"),
        (dict(index=gallery, words=["dog"]), "map one thing"),
        (dict(), "map one thing"),
        (dict(words=["dog"], top_words=3), "map one thing"),
        (dict(top_words=100), "too few points for a t-SNE map: 5 words"),  # the tiny model knows five words
        (dict(top_words=0, space="glove"), "top_words must be an integer from 1"),
        (dict(words=["", " "], space="glove"), "no words to map"),
        (dict(words="dog,cat", space="glove"), "give the words as a list"),
    ]
    for kwargs, message in cases:
        with pytest.raises(OneNetError, match=message):
            tiny_net.embedding_map(**kwargs)
    with pytest.raises(UnknownWordError, match="'kitteen' is not in the GloVe vocabulary.*did you mean 'kitten'"):
        tiny_net.embedding_map(words=["cat", "kitteen"], space="glove")
    empty = GalleryIndex(gallery.folder, {"paths": []}, {name: np.zeros((0, 4)) for name in ARRAYS})
    with pytest.raises(OneNetError, match="no gallery images to map"):
        tiny_net.embedding_map(empty)
    monkeypatch.setattr(maps, "MAX_MAP_POINTS", 10)
    with pytest.raises(OneNetError, match="12 gallery images are more than a map takes \\(10\\); map fewer"):
        tiny_net.embedding_map(gallery)


def test_check_map_size_states_the_perplexity_rule():
    assert check_map_size(7, None, "words") == 2.0
    assert check_map_size(91, None, "words") == 30.0
    assert check_map_size(1000, None, "words") == 30.0
    with pytest.raises(OneNetError, match="at least 7 points"):
        check_map_size(6, None, "words")


def test_a_map_is_written_as_html_or_png_into_an_existing_folder(word_map, tmp_path):
    with pytest.raises(OneNetError, match="a map is written as .html or .png; got 'map.svg'"):
        word_map.save(tmp_path / "map.svg")
    with pytest.raises(OneNetError, match="its folder does not exist"):
        word_map.save(tmp_path / "missing" / "map.png")


@pytest.fixture(scope="module")
def tiny_model_dir(tiny_net, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_net.save_pretrained(folder)
    return folder


def test_cli_writes_an_image_map_and_a_word_map(tiny_model_dir, gallery, tmp_path, capsys):
    index, out = tmp_path / "index", tmp_path / "images.png"
    assert main(["index", "--model", str(tiny_model_dir), str(gallery.folder.parent), "--out", str(index)]) == 0
    assert main(["map", "--model", str(tiny_model_dir), "--index", str(index), "--out", str(out)]) == 0
    assert f"written to {out}" in capsys.readouterr().out
    with Image.open(out) as png:
        assert png.size == (PNG_SIZE, PNG_SIZE)
    out = tmp_path / "words.html"
    args = ["map", "--model", str(tiny_model_dir), "--words", "dog,cat,puppy,kitten,car,truck,bus", "--space", "glove"]
    assert main([*args, "--seed", "1", "--out", str(out)]) == 0
    assert "7 given words of the GloVe space" in capsys.readouterr().out and "kitten" in out.read_text()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--top-words", "50", "--out", "map.svg"], "a map is written as .html or .png"),
        (["--words", "dog,cat", "--color-by", "tag", "--out", "map.png"], "--color-by applies to image maps"),
        (["--index", "IDX", "--space", "glove", "--out", "map.png"], "--space applies to word maps"),
        (["--words", "dog,dgo,cat,puppy,kitten,car,bus", "--space", "glove", "--out", "map.png"], "'dgo' is not in"),
        (["--index", "no-such-index", "--out", "map.png"], "no gallery index at no-such-index"),
    ],
)
def test_cli_errors_are_one_line(tiny_model_dir, tmp_path, capsys, arguments, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["map", "--model", str(tiny_model_dir), *arguments]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]  # not the loading bar
    assert len(errors) == 1 and errors[0].startswith("onenet map: error: ") and message in errors[0]
    assert not list(tmp_path.iterdir())
