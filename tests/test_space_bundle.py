"""`onenet build-space` writes a Space folder that installs in a fresh venv and serves all six endpoints.

Does what Hugging Face Spaces does: `pip install -r requirements.txt` in a fresh venv, then `python app.py`
with the folder as working directory and no checkout on `sys.path`. Slow (installs torch, gradio, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard
from PIL import Image

from onenet_hf.cli import main
from onenet_hf.data.example_photos import example_gallery, example_photos
from tools import space_runner

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "onenet-flickr8k"
ARTIFACTS = ROOT / "test-artifacts" / "space-bundle"
CHROMIUM = Path("/usr/bin/chromium")


def coco_folder(root: Path) -> Path:
    """A COCO-format folder: one CC BY photo, one non-commercial one (which a Space must not carry)."""
    (root / "images").mkdir(parents=True)
    images = []
    for number, licence in ((1, 4), (2, 2)):
        Image.new("RGB", (64, 48), (40 * number, 90, 160)).save(root / "images" / f"{number:012d}.jpg")
        images.append({"id": number, "file_name": f"{number:012d}.jpg", "license": licence, "flickr_url": f"u{number}"})
    (root / "captions_dev.json").write_text(json.dumps({"images": images, "annotations": []}))
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("space") / "onenet-space"
    gallery = coco_folder(tmp_path_factory.mktemp("coco"))
    assert main(["build-space", "--model", str(CHECKPOINT), "--out", str(out), "--gallery", str(gallery)]) == 0
    return out


def test_the_folder_is_a_space_repo(bundle):
    card = SpaceCard.load(bundle / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.sdk_version
    assert card.data.models == ["onenet-hf/onenet-flickr8k"]
    gallery = sorted(p.name for p in (bundle / "gallery").iterdir())
    assert "000000000001.jpg" in gallery and "000000000002.jpg" not in gallery  # non-commercial licence left out
    assert len(gallery) == len(example_gallery()) + 1
    assert "000000000001.jpg`: Flickr photo u1 (MS-COCO), [CC BY 2.0]" in (bundle / "ATTRIBUTION.md").read_text()
    (catalogue,) = bundle.rglob("index.sqlite")
    with contextlib.closing(sqlite3.connect(f"file:{catalogue}?immutable=1", uri=True)) as connection:  # no -shm
        paths = [path for (path,) in connection.execute("SELECT path FROM images")]
    assert sorted(paths) == [f"gallery/{name}" for name in gallery]  # no folder of the machine that built it
    requirements = (bundle / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("gradio==") for line in requirements) and "torch==2.13.0" in requirements
    assert not any("onenet" in line for line in requirements)  # the package travels in the folder itself


def test_the_bundle_carries_the_gallery_encoder_and_sends_every_binary_file_to_lfs(bundle):
    assert (bundle / "model" / "onnx" / "image_encoder.int8-static.onnx").is_file()  # the checkpoint's own
    files = [p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and "onenet_hf" not in p.parts]
    binary = sorted(name for name in files if b"\0" in (bundle / name).read_bytes()[:8000])
    assert {"model/model.safetensors", "model/onnx/image_encoder.int8-static.onnx"} <= set(binary)
    assert any(name.startswith("gallery/") for name in binary) and any(name.endswith(".npy") for name in binary)
    subprocess.run(["git", "init", "-q", str(bundle)], check=True)
    attributes = subprocess.run(
        ["git", "check-attr", "filter", "--", *binary], cwd=bundle, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert [line for line in attributes if not line.endswith(": filter: lfs")] == []
    assert len(attributes) == len(binary)
    text = ["README.md", "app.py", "requirements.txt", "model/config.json"]
    assert all(b"\0" not in (bundle / name).read_bytes() for name in text)
    kept = subprocess.run(["git", "check-attr", "filter", "--", *text], cwd=bundle, capture_output=True, text=True)
    assert all(line.endswith(": filter: unspecified") for line in kept.stdout.splitlines())
    shutil.rmtree(bundle / ".git")  # the other tests see the bundle as built


def test_a_corrupt_model_or_a_taken_folder_is_one_line_and_leaves_nothing(tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(CHECKPOINT, corrupt, ignore=shutil.ignore_patterns("onnx"))
    (corrupt / "model.safetensors").write_bytes(b"not weights")
    assert main(["build-space", "--model", str(corrupt), "--out", str(tmp_path / "space")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not load" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt"]


def test_the_space_installs_in_a_fresh_venv_and_answers_all_six_endpoints(bundle, tmp_path):
    from gradio_client import handle_file

    python = space_runner.install(bundle, tmp_path / "venv", compile_bytecode=False)
    server, client, seconds = space_runner.start(bundle, python, tmp_path / "space.log", tmp_path)
    try:
        print(f"cold start (process start to first caption): {seconds:.1f} s")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "cold_start.txt").write_text(f"{seconds:.1f} s\n")
        photo = str(next(p for p in example_photos() if p.stem == "motorcycle_left"))
        caption = client.predict(handle_file(photo), 3, api_name="/caption")
        assert "motorcycle" in caption or "bike" in caption
        words, labels, scores = client.predict(handle_file(photo), 5, api_name="/tag")
        assert len(words["data"]) == 5 and labels["data"] and len(scores["words"]) == 5
        assert client.predict("dog", "learned", 5, api_name="/similar_words")["data"]
        analogy = client.predict("man", "king", "woman", "3cosadd", "glove", 3, api_name="/analogy")
        assert analogy["data"][0][0] == "queen"
        shown, matches = client.predict(None, 0, 3, "", api_name="/similar_images")
        assert len(shown) == 3 and len(matches) == 3 and {"row", "name", "score"} <= set(matches[0])
        assert client.predict("a man riding a motorcycle", "reranked", 3, api_name="/search")
        _screenshot(client.src)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _screenshot(url: str) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.get_by_role("tab", name="Similar images").click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "space.png"), full_page=True)
        browser.close()


def hostile_gallery(root: Path) -> Path:
    """A gallery with one photo and what must never be published: a text file named .jpg, a link to a private
    file, a broken link, a link loop and a photo whose name is not valid UTF-8; plus a link to the photo, and two
    other photos whose names the bundle must not confuse with it (`more/photo.png`, `1-photo.png`)."""
    gallery, private = root / "gallery", root / "private"
    gallery.mkdir()
    private.mkdir()
    Image.new("RGB", (64, 48), (200, 90, 40)).save(gallery / "photo.png")
    (gallery / "more").mkdir()
    Image.new("RGB", (64, 48), (40, 40, 200)).save(gallery / "more" / "photo.png")
    Image.new("RGB", (64, 48), (200, 200, 40)).save(gallery / "1-photo.png")
    Image.new("RGB", (64, 48), (20, 190, 40)).save(os.fsdecode(bytes(gallery) + b"/caf\xe9.png"))
    (gallery / "notes.jpg").write_text("not an image")
    (private / "secret.txt").write_text("SECRET-TOKEN")
    (gallery / "secret_link.jpg").symlink_to(private / "secret.txt")
    (gallery / "broken.jpg").symlink_to(root / "nowhere.jpg")
    (gallery / "loop.jpg").symlink_to(gallery / "loop.jpg")
    (gallery / "same_photo.png").symlink_to(gallery / "photo.png")
    return gallery


def test_publishable_photos_are_the_gallery_s_own_files_with_text_names(tmp_path, capsys):
    from onenet_hf.publish.space_bundle import gallery_photos, publishable_photos

    gallery = hostile_gallery(tmp_path)
    kept = publishable_photos(gallery_photos(gallery), gallery)  # nothing decoded: the index decides what is an image
    top = ["1-photo.png", "notes.jpg", "photo.png", "same_photo.png"]
    assert sorted(p.path.name for p in kept if p.path.parent == gallery) == top
    assert len(kept) == len(example_gallery()) + 5
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and all(line.startswith("left out of the Space: ") for line in lines)
    assert any("caf\\\\xe9.png: the name is not valid UTF-8" in line for line in lines)  # escape_controls
    assert any("secret_link.jpg: a link to a file outside the gallery" in line for line in lines)


def test_build_space_publishes_only_images_and_the_space_starts_with_a_non_utf8_name(tmp_path, capsys):
    from onenet_hf.space.service import OneNetSpace

    gallery = hostile_gallery(tmp_path)
    out = tmp_path / "space"
    assert main(["build-space", "--model", str(CHECKPOINT), "--out", str(out), "--gallery", str(gallery)]) == 0
    published = sorted(p.name for p in (out / "gallery").iterdir())
    own = ["1-photo.png", "photo.png", "2-photo.png", "same_photo.png"]  # more/photo.png came second: photo.png
    assert published == sorted([*(p.name for p in example_gallery()), *own])
    colours = {name: Image.open(out / "gallery" / name).getpixel((0, 0)) for name in own}
    assert colours == {"1-photo.png": (200, 200, 40), "photo.png": (40, 40, 200), "2-photo.png": (200, 90, 40),
                       "same_photo.png": (200, 90, 40)}  # fmt: skip
    attribution = (out / "ATTRIBUTION.md").read_text()
    assert all(attribution.count(f"- `{name}`: ") == 1 for name in published)  # each copy credited once
    assert "notes.jpg" not in attribution and "secret_link" not in attribution and "loop.jpg" not in attribution
    assert not any(b"SECRET-TOKEN" in p.read_bytes() for p in out.rglob("*") if p.is_file())
    err = capsys.readouterr().err
    assert f"left out of the Space: {gallery / 'notes.jpg'}: not an image file" in err and "Traceback" not in err
    shipped = OneNetSpace(CHECKPOINT, out / "gallery", folder=out / "gallery_index", export_cache=None).index.metadata
    assert shipped["skipped"] == [] and shipped["build_changes"]["embedded"] == 0  # the shipped index is ready
    space = OneNetSpace(CHECKPOINT, gallery, folder=tmp_path / "state", export_cache=None)  # on the raw gallery too
    skipped = {entry["path"].rsplit("/", 1)[-1] for entry in space.index.metadata["skipped"]}
    assert "caf\\xe9.png" in skipped and len(space.index) == 3  # the three photos (same_photo.png links to one)


def test_build_space_without_gradio_names_the_extra_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now fails, as without the space extra
    out = tmp_path / "space"
    assert main(["build-space", "--model", str(CHECKPOINT), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'onenet_hf[space]'" in err[0], err
    assert not out.exists()
