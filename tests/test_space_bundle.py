"""`onenet build-space` writes a Space folder that installs in a fresh venv and serves all six endpoints.

Does what Hugging Face Spaces does: `pip install -r requirements.txt` in a fresh venv, then `python app.py`
with the folder as working directory and no checkout on `sys.path`. Slow (installs torch, gradio, ...).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import SpaceCard
from PIL import Image

from onenet_hf.cli import main
from onenet_hf.samples import sample_gallery, sample_photos

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "onenet-flickr8k"
ARTIFACTS = ROOT / "test-artifacts" / "space-bundle"
CHROMIUM = Path("/usr/bin/chromium")
_spec = importlib.util.spec_from_file_location("space_cold_start", ROOT / "bench" / "space_cold_start.py")
cold_start = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cold_start)


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
    assert len(gallery) == len(sample_gallery()) + 1
    assert "000000000001.jpg`: Flickr photo u1 (MS-COCO), [CC BY 2.0]" in (bundle / "ATTRIBUTION.md").read_text()
    requirements = (bundle / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("gradio==") for line in requirements) and "torch==2.13.0" in requirements
    assert not any("onenet" in line for line in requirements)  # the package travels in the folder itself


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

    python = cold_start.install(bundle, tmp_path / "venv")
    server, client, seconds = cold_start.start(bundle, python, tmp_path / "space.log", tmp_path)
    try:
        print(f"cold start (process start to first caption): {seconds:.1f} s")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "cold_start.txt").write_text(f"{seconds:.1f} s\n")
        photo = str(next(p for p in sample_photos() if p.stem == "motorcycle_left"))
        caption = client.predict(handle_file(photo), 3, api_name="/caption")
        assert "motorcycle" in caption or "bike" in caption
        words, labels = client.predict(handle_file(photo), 5, api_name="/tag")
        assert len(words["data"]) == 5 and labels["data"]
        assert client.predict("dog", "learned", 5, api_name="/similar_words")["data"]
        analogy = client.predict("man", "king", "woman", "3cosadd", "glove", 3, api_name="/analogy")
        assert analogy["data"][0][0] == "queen"
        assert len(client.predict(None, 0, 3, "", api_name="/similar_images")) == 3
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
