"""The checkpoint that ships in the repository loads offline and captions real photos."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from transformers import AutoModel, AutoProcessor

from onenet_hf import OneNet, OneNetModel, OneNetProcessor
from onenet_hf.data.example_photos import example_photos
from onenet_hf.onnx.backend import OnnxExportError
from onenet_hf.uses.search import SEARCH_METHODS

CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "onenet-flickr8k"


def test_folder_layout_and_size_budget():
    names = {p.name for p in CHECKPOINT.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"} <= names
    shipped = subprocess.run(
        ["git", "ls-files", "--", "."], cwd=CHECKPOINT, check=True, capture_output=True, text=True
    ).stdout.split()
    assert {"onnx/manifest.json", "onnx/image_encoder.int8-static.onnx"} <= set(shipped)  # the gallery encoder
    assert sum((CHECKPOINT / name).stat().st_size for name in shipped) <= 40 * 1024 * 1024


def test_the_shipped_gallery_encoder_embeds_galleries_by_default_and_captions_stay_pytorch():
    net = OneNet.from_pretrained(CHECKPOINT, backend="auto", onnx_variant="fastest")  # onenet index's settings
    assert net.gallery_embedder().description == "onnxruntime, image_encoder.int8-static.onnx"
    assert not net.onnx.has_decoder and net._onnx_captioner() is None
    space_like = OneNet.from_pretrained(
        CHECKPOINT, backend="auto", onnx_variant="int8-dynamic"
    )  # no int8 graph shipped
    assert space_like.onnx is None
    assert space_like.gallery_embedder().description == "onnxruntime, image_encoder.int8-static.onnx"
    assert OneNet.from_pretrained(CHECKPOINT).gallery_embedder().description == "PyTorch"  # backend="torch"
    with pytest.raises(OnnxExportError, match="no decoder_init, decoder_step graph"):
        OneNet.from_pretrained(CHECKPOINT, backend="onnx", onnx_variant="int8-static")


def test_loads_with_auto_classes():
    assert isinstance(AutoModel.from_pretrained(CHECKPOINT), OneNetModel)
    assert isinstance(AutoProcessor.from_pretrained(CHECKPOINT), OneNetProcessor)


@pytest.mark.slow
def test_captions_example_photos():
    photos = {p.stem: p for p in example_photos()}
    captions = OneNet.from_pretrained(CHECKPOINT).caption([photos["motorcycle_left"], photos["astronaut"]], beam_size=3)
    motorbike, astronaut = (c.text.split() for c in captions)
    assert "motorcycle" in motorbike or "motorbike" in motorbike or "bike" in motorbike, motorbike
    assert {"man", "woman", "person", "boy", "girl"} & set(astronaut), astronaut
    assert all(-10 < c.score < 0 for c in captions)


@pytest.fixture(scope="module")
def shipped():
    return OneNet.from_pretrained(CHECKPOINT)


@pytest.fixture(scope="module")
def sample_index(shipped, tmp_path_factory):
    return shipped.build_index(example_photos(), tmp_path_factory.mktemp("samples") / "index")


def test_no_repeat_ngram_size_reaches_caption_and_generate_alike(shipped):
    photo = next(p for p in example_photos() if p.stem == "astronaut")
    unblocked = shipped.caption(photo, no_repeat_ngram_size=0)[0].text.split()
    assert len(set(unblocked)) < len(unblocked), unblocked  # the test needs a caption that repeats a word
    blocked = shipped.caption(photo, no_repeat_ngram_size=1)[0].text
    assert len(set(blocked.split())) == len(blocked.split()), blocked
    ids = shipped.model.generate(shipped.processor(images=[photo])["pixel_values"], no_repeat_ngram_size=1)
    assert shipped.processor.batch_decode(ids, skip_special_tokens=True) == [blocked]


@pytest.mark.slow
def test_tags_and_imagenet_labels_of_example_photos(shipped):
    photos = {p.stem: p for p in example_photos()}
    cat, motorbike = shipped.tag([photos["chelsea"], photos["motorcycle_left"]], k=5)
    assert any("cat" in label.word for label in cat.imagenet), cat.imagenet
    assert {"motorcycle", "bike", "motorbike"} & {t.word for t in motorbike.words}, motorbike.words


def test_word_spaces_of_the_shipped_model(shipped):
    assert {"dogs", "puppy"} & {w.word for w in shipped.similar_words("dog", k=5, space="learned")}
    assert shipped.analogy("man", "king", "woman", space="glove")[0].word == "queen"


@pytest.mark.slow
def test_similar_images_and_description_search_on_example_photos(shipped, sample_index):
    from PIL import Image

    photo = next(p for p in example_photos() if p.stem == "motorcycle_left")
    mirrored = Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    assert shipped.similar_images(sample_index, mirrored, k=3)[0].path == str(photo.resolve())
    for method in SEARCH_METHODS:
        assert shipped.search(sample_index, "a man riding a motorcycle", k=1, method=method)[0].path == str(
            photo.resolve()
        ), method
