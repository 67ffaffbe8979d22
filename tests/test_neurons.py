"""Explore, neurons: top gallery images from the stored vectors, the decoder's words, an image's distinctive
neurons, contact sheets, `onenet neuron`, and one error per bad input. On the tiny untrained model of conftest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from onenet_hf import OneNet, OneNetError
from onenet_hf.cli import main
from onenet_hf.explore import neurons
from onenet_hf.explore.sheets import LINE, TILE, TITLE_LINE, sheet_size
from onenet_hf.gallery.index import GalleryIndex
from onenet_hf.representations import ARRAYS
from tests.conftest import COLOURS, SHAPES, draw_shape


@pytest.fixture(scope="module")
def model_dir(tiny_net, tmp_path_factory):
    """The tiny model, saved for the CLI (saving fills in its config's `architectures`, part of its fingerprint,
    so the gallery is built by the model loaded back)."""
    folder = tmp_path_factory.mktemp("tiny_model")
    tiny_net.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def net(model_dir):
    return OneNet.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def gallery(net, tmp_path_factory):
    """The 12 colour-shape images, indexed by the tiny model."""
    folder = tmp_path_factory.mktemp("neuron_gallery")
    for k, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        draw_shape(colour, shape, 700 + k).save(folder / f"{colour}_{shape}.png")
    return net.build_index(folder, folder / "index")


@pytest.mark.parametrize(("kind", "number"), [("unit", 5), ("channel", 900)])
def test_top_images_are_the_largest_values_of_the_stored_column(net, gallery, kind, number):
    column = np.asarray(getattr(gallery, neurons.VECTORS[kind])[:, number], dtype=np.float32)
    found = net.neuron(gallery, **{kind: number}, k=4, n_words=0)
    assert (found.kind, found.number, found.name) == (kind, number, f"{kind} {number}")
    assert [gallery.paths.index(i.path) for i in found.images] == list(np.argsort(-column, kind="stable")[:4])
    assert [i.activation for i in found.images] == pytest.approx(np.sort(column)[::-1][:4].tolist())
    assert found.gallery_mean == pytest.approx(column.mean()) and found.gallery_std == pytest.approx(column.std())
    assert found.words == () and found.z_score is None
    assert len(net.neuron(gallery, **{kind: number}, k=64, n_words=0).images) == len(gallery)


def test_words_are_ranked_by_their_rise_and_change_with_the_unit(net, gallery):
    special = set(net.processor.tokenizer.all_special_tokens)
    found = {unit: net.neuron(gallery, unit=unit, k=1, n_words=5).words for unit in (0, 1)}
    for words in found.values():
        scores = [w.score for w in words]
        assert len(words) == 5 and scores == sorted(scores, reverse=True) and not special & {w.word for w in words}
    by_word = [{w.word: w.score for w in words} for words in found.values()]
    shared = set(by_word[0]) & set(by_word[1])
    assert shared and any(by_word[0][w] != pytest.approx(by_word[1][w], abs=1e-9) for w in shared)
    channel_words = net.neuron(gallery, channel=0, k=1, n_words=5).words
    assert [w.score for w in channel_words] != [w.score for w in found[0]]


def test_word_log_prob_changes_are_the_decoders_step_by_step_changes(net):
    """The teacher-forced mean over positions equals what `decoder_step` gives one token at a time."""
    model, token_ids = net.model, [[2, 5, 6, 3], [2, 7, 3]]
    torch.manual_seed(1)
    base = torch.randn(2, model.config.hidden_size)
    pushes = torch.stack([base, base + 3.0 * torch.eye(model.config.hidden_size)[4]])
    with torch.inference_mode():
        changes = model.get_word_log_prob_changes(token_ids, base, pushes)

        def step_log_probs(embeds: torch.Tensor, ids: list[int]) -> torch.Tensor:
            state, rows = model.initial_state(embeds[None]), []
            for token in ids[:-1]:
                log_probs, state = model.decoder_step(torch.tensor([token]), state)
                rows.append(log_probs[0])
            return torch.stack(rows)

        for row, ids in enumerate(token_ids):
            expected = (step_log_probs(pushes[1, row], ids) - step_log_probs(base[row], ids)).mean(0)
            assert torch.allclose(changes[1, row], expected, atol=1e-5)
    assert changes.shape == (2, 2, model.config.vocab_size) and torch.all(changes[0] == 0)


def test_pooled_features_project_to_the_stored_representation(net, gallery):
    """One projection after pooling: a channel's push reaches the decoder as the gallery's own vectors do."""
    pooled = torch.from_numpy(np.asarray(gallery.pooled_features, dtype=np.float32))
    with torch.inference_mode():
        projected = net.model.get_image_features_from_pooled(pooled).numpy()
    assert np.allclose(projected, gallery.image_embeds, atol=1e-2)  # pooled features are stored in fp16


def test_distinctive_neurons_have_the_largest_z_scores_against_the_gallery(net, gallery):
    row = 4
    found = net.distinctive_neurons(gallery, gallery.paths[row], n=3, k=2, n_words=2)
    values = np.asarray(gallery.image_embeds, dtype=np.float32)
    z_scores = (values[row] - values.mean(0)) / values.std(0)
    assert [n.number for n in found] == list(np.argsort(-z_scores)[:3])
    assert [n.z_score for n in found] == pytest.approx(np.sort(z_scores)[::-1][:3].tolist(), abs=1e-4)
    assert [n.activation for n in found] == pytest.approx(values[row, [n.number for n in found]].tolist())
    alone = net.neuron(gallery, unit=found[0].number, k=2, n_words=2)
    assert found[0].images == alone.images and found[0].words == alone.words
    channels = net.distinctive_neurons(gallery, Image.open(gallery.paths[row]), n=2, k=1, n_words=0, kind="channel")
    pooled = np.asarray(gallery.pooled_features, dtype=np.float32)
    assert channels[0].kind == "channel" and channels[0].activation == pytest.approx(pooled[row, channels[0].number])


def test_contact_sheet_and_cli_write_pngs_of_the_expected_size(net, model_dir, gallery, tmp_path, capsys):
    found = net.neuron(gallery, unit=3, k=9, n_words=3)
    assert found.to_image().size == sheet_size(9, 9, 2, 3)
    out = tmp_path / "sheet.png"
    args = ["neuron", "--model", str(model_dir), "--index", str(gallery.folder), "--unit", "3", "-k", "9"]
    assert main([*args, "--words", "3", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("unit 3 of the image representation: gallery mean")
    assert lines[1].startswith("words (mean log-probability rise when it is pushed up): ")
    assert [line.split("\t")[0] for line in lines[2:11]] == [i.path for i in found.images]
    assert lines[11] == f"contact sheet written to {out}"
    with Image.open(out) as sheet:
        assert sheet.format == "PNG" and sheet.size == sheet_size(9, 9, 2, 3)
    assert sheet_size(9, 9, 2, 3) == (9 * (TILE + 6) + 6, 3 * TITLE_LINE + TILE + 2 * LINE + 12)
    args = ["neuron", "--model", str(model_dir), "--index", str(gallery.folder), "--image", gallery.paths[0]]
    assert main([*args, "-n", "2", "-k", "3", "--out", str(out)]) == 0
    with Image.open(out) as sheet:  # two neurons stacked; the fewest columns leave room for the titles
        assert sheet.size == (sheet_size(3, 6, 2, 3)[0], 2 * sheet_size(3, 6, 2, 3)[1])
    assert {path.name for path in tmp_path.iterdir()} == {"sheet.png"}  # no temporary file left


def test_one_error_each_for_bad_requests(net, gallery, tmp_path):
    def error(call, *args, **kwargs) -> str:
        with pytest.raises(OneNetError) as caught:
            call(gallery, *args, **kwargs)
        return str(caught.value)

    assert error(net.neuron, unit=16) == "unit 16 does not exist: the image representation has units 0-15"
    assert error(net.neuron, unit=-1).startswith("unit -1 does not exist")
    assert error(net.neuron, channel=1280).endswith("the pooled backbone features has channels 0-1279")
    assert error(net.neuron, unit=True).startswith("unit True does not exist")
    assert error(net.neuron).startswith("give one of unit (0-15, the image representation) or channel (0-1279")
    assert error(net.neuron, unit=1, channel=1).startswith("give only one of unit")
    assert error(net.neuron, unit=1, k=65) == "k must be an integer from 1 to 64, got 65"
    assert error(net.neuron, unit=1, n_words=101) == "n_words must be an integer from 0 to 100, got 101"
    assert error(net.distinctive_neurons, gallery.paths[0], n=17).startswith("n must be an integer from 1 to 16")
    assert "unknown neuron kind 'layer'" in error(net.distinctive_neurons, gallery.paths[0], kind="layer")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    assert "broken.jpg: not an image file" in error(net.distinctive_neurons, tmp_path / "broken.jpg")
    empty = GalleryIndex(
        tmp_path, {"paths": []}, {name: np.zeros((0, 16 if name == "image_embeds" else 8)) for name in ARRAYS}
    )
    for call in (lambda: net.neuron(empty, unit=1), lambda: net.distinctive_neurons(empty, gallery.paths[0])):
        with pytest.raises(OneNetError, match="is empty; index a folder of images: onenet index"):
            call()


def test_a_gallery_of_one_image_has_top_images_but_no_words_and_no_distinctive_neurons(net, gallery, tmp_path):
    (tmp_path / "photos").mkdir()
    Image.open(gallery.paths[0]).save(tmp_path / "photos" / "one.png")
    single = net.build_index(tmp_path / "photos", tmp_path / "index")
    found = net.neuron(single, unit=2)
    assert len(found.images) == 1 and found.words == () and found.gallery_std == 0.0
    assert found.to_image().size == sheet_size(1, 6, 2, 3)
    with pytest.raises(OneNetError, match="no unit varies over the gallery .* index more images: onenet index"):
        net.distinctive_neurons(single, gallery.paths[1])
