"""The Gradio Space: every endpoint through gradio_client, every tab in headless Chromium, bad input survived.

Screenshots of each tab go to test-artifacts/space/ (git-ignored). The browser tests need Debian's
chromium at /usr/bin/chromium and the `playwright` package (see DEVELOPERS.md); they skip without them.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from onenet_hf.data.example_photos import example_photos  # noqa: E402
from onenet_hf.errors import OneNetError  # noqa: E402
from onenet_hf.fingerprint import model_fingerprint  # noqa: E402
from onenet_hf.images import load_image  # noqa: E402
from onenet_hf.space.service import OneNetSpace  # noqa: E402
from tests.conftest import png_claiming_size, png_with_chunk  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "onenet-flickr8k"
ARTIFACTS = ROOT / "test-artifacts" / "space"
CHROMIUM = Path("/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    from onenet_hf.space import app as space_app

    return space_app


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    """The shipped checkpoint and the example-photo gallery, uploads off; its int8 graphs exported once, as a
    checkout's Space does at its first start (into the test's own cache)."""
    exports = tmp_path_factory.mktemp("exports")
    return OneNetSpace(CHECKPOINT, cache_dir=tmp_path_factory.mktemp("galleries"), export_cache=exports)


@pytest.fixture(scope="module")
def server(app, space):
    """The Space on a free loopback port, serving what `onenet_hf.space.launch.main` serves."""
    demo = app.build_demo(space)
    port = _free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.launch_options(space)
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def photo(stem: str) -> str:
    return str(next(p for p in example_photos() if p.stem == stem))


def test_the_named_endpoints_six_uses_four_explore_views_and_four_imagine_views(client):
    endpoints = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    uses = {"/caption", "/tag", "/similar_words", "/analogy", "/similar_images", "/search"}
    imagine = {"/visualize", "/imagine", "/dream", "/style"}
    assert endpoints == uses | {"/map", "/neuron", "/explain", "/layers"} | imagine


def test_the_imagine_endpoints_stream_their_image_as_it_forms(client, space):
    job = client.submit("class", "goldfish", 16, 0, api_name="/visualize")
    job.result(timeout=120)
    frames = job.outputs()  # every image the generator yielded: one per 8 steps
    assert len(frames) == 2 and all(Image.open(frame).size == (260, 260) for frame in frames)
    imagined = client.predict("a dog runs on the beach", 4, 0, api_name="/imagine")
    assert Image.open(imagined).size == (260, 260)
    dreamed = client.predict(handle_file(photo("chelsea")), "head", 1.0, 3, api_name="/dream")
    assert Image.open(dreamed).size == (391, 260)  # the photo's short side at 260, its aspect kept
    styled = client.predict(handle_file(photo("astronaut")), handle_file(photo("coffee")), 10, 2, api_name="/style")
    assert Image.open(styled).size == (260, 260)
    with pytest.raises(Exception, match="Value 201 is greater than maximum value 200"):  # the slider's own cap
        client.predict("unit", "3", 201, 0, api_name="/visualize")
    with pytest.raises(OneNetError, match="steps must be 1 to 200 on this Space"):  # and the Space's, behind it
        space.visualize("unit", 3, 201, 0)
    with pytest.raises(Exception, match="not in the caption vocabulary"):
        client.predict("a qwzx on the beach", 4, 0, api_name="/imagine")
    with pytest.raises(Exception, match="no style image"):
        client.predict(handle_file(photo("astronaut")), None, 10, 2, api_name="/style")
    assert client.predict("man", "king", "woman", "3cosadd", "glove", 1, api_name="/analogy")["data"]


def test_the_explore_endpoints_answer_sensibly(client):
    figure = client.predict("images", "tag", "learned", "", 300, api_name="/map")
    names = {text.split("<br>")[0] for trace in figure_traces(figure) for text in trace.get("hovertext") or []}
    assert {"chelsea.png", "rocket.jpg", "china.jpg"} <= {name.replace("<b>", "").replace("</b>", "") for name in names}
    words = client.predict(
        "words", "tag", "learned", "dog, cat, beach, snow, red, blue, man, woman", 300, api_name="/map"
    )
    assert figure_traces(words)
    images, table, neurons = client.predict("unit", 17, None, 5, api_name="/neuron")
    assert len(images) == 5 and len(table["data"]) == 10 and all(row[0] == "unit 17" for row in table["data"])
    [unit] = neurons  # the same answer for programs: names, gallery rows, activations, words
    assert (unit["neuron"], unit["kind"], unit["number"]) == ("unit 17", "unit", 17) and len(unit["images"]) == 5
    assert [f"{m['name']} ({m['score']:.3f})" for m in unit["images"]] == [item["caption"] for item in images]
    assert [[w["word"], round(w["score"], 4)] for w in unit["words"]] == [row[1:] for row in table["data"]]
    sheets, _, neurons = client.predict("channel", 0, handle_file(photo("chelsea")), 3, api_name="/neuron")
    assert len(sheets) == 4 and all(item["caption"].startswith("channel ") for item in sheets)
    assert [n["neuron"] for n in neurons] == [item["caption"].split(":")[0] for item in sheets]
    assert all(n["z_score"] is not None and len(n["images"]) == 3 for n in neurons)
    overlays, explained = client.predict(handle_file(photo("motorcycle_left")), "", api_name="/explain")
    assert any(item["caption"].startswith("motorcycle (") for item in overlays)
    assert "motorcycle" in [w["word"] for w in explained["words"]] and explained["caption"]
    assert [f"{w['word']} (log p {w['log_prob']:.2f})" for w in explained["words"]] == [i["caption"] for i in overlays]
    stages, channels = client.predict(handle_file(photo("rocket")), api_name="/layers")
    names = ["stem", *(f"stage {n}" for n in range(1, 8)), "head"]
    assert [item["caption"] for item in stages] == [stage["stage"] for stage in channels] == names
    assert all(stage["channels"] and {"channel", "mean"} == set(stage["channels"][0]) for stage in channels)


def figure_traces(figure) -> list[dict]:
    """The traces of a plotly figure as gradio_client hands a `gr.Plot` value back (JSON, maybe nested)."""
    import json

    plot = figure.get("plot", figure) if isinstance(figure, dict) else figure
    plot = json.loads(plot) if isinstance(plot, str) else plot
    return plot["data"]


def test_every_endpoint_answers_sensibly(client):
    assert "motorcycle" in client.predict(handle_file(photo("motorcycle_left")), 3, api_name="/caption")
    words, labels, tags = client.predict(handle_file(photo("chelsea")), 5, api_name="/tag")
    assert len(words["data"]) == 5 and any("cat" in label for label, _ in labels["data"])
    assert [[t["word"], round(t["score"], 4)] for t in tags["words"]] == words["data"]  # the table, for programs
    assert [[t["word"], round(t["score"], 4)] for t in tags["imagenet_labels"]] == labels["data"]
    assert client.predict("man", "king", "woman", "3cosadd", "glove", 3, api_name="/analogy")["data"][0][0] == "queen"
    similar = client.predict("dog", "learned", 5, api_name="/similar_words")["data"]
    assert {"dogs", "puppy"} & {word for word, _ in similar}
    found, _ = client.predict(handle_file(photo("camera")), None, 3, "", api_name="/similar_images")
    assert len(found) == 3 and all(Path(item["image"]).is_file() for item in found)
    focused, _ = client.predict(None, 0, 2, "Siamese cat", api_name="/similar_images")
    assert len(focused) == 2
    hits, _ = client.predict("a man riding a motorcycle", "reranked", 1, api_name="/search")
    assert hits[0]["caption"].startswith("motorcycle_")  # the gallery has the stereo pair's left and right photos


def test_bad_input_is_a_readable_error_and_the_server_keeps_serving(client, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])  # a JPEG cut off half-way
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bomb = tmp_path / "bomb.png"
    png_claiming_size(bomb, 9400, 9400)  # 88.4 megapixels by its header: refused before decoding
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((6000, 6000, 3), dtype=np.uint8)).save(big, compress_level=1)  # 36 megapixels
    text_bomb = tmp_path / "text_bomb.png"
    png_with_chunk(text_bomb, b"zTXt", b"Comment\x00\x00")
    cases = [
        (lambda: client.predict(None, 3, api_name="/caption"), "no image"),
        (lambda: client.predict(handle_file(str(corrupt)), 3, api_name="/caption"), "corrupt or truncated"),
        (lambda: client.predict("   ", "reranked", 3, api_name="/search"), "the text is empty"),
        (lambda: client.predict("qwzx", "learned", 5, api_name="/similar_words"), "not in the learned caption"),
        (lambda: client.predict("man", "kingg", "woman", "3cosadd", "glove", 3, api_name="/analogy"), "did you mean"),
        (lambda: client.predict(handle_file(str(bomb)), 3, api_name="/caption"), "limit is 40.0 megapixels"),
        (lambda: client.predict(handle_file(str(text_bomb)), 3, api_name="/caption"), "damaged image"),
        (lambda: client.predict(handle_file(photo("chelsea")), 9, api_name="/caption"), "maximum value 8"),
        (lambda: client.predict("dog", "learned", 51, api_name="/similar_words"), "maximum value 50"),
        (lambda: client.predict("unit", 512, None, 5, api_name="/neuron"), "units 0-511"),
        (lambda: client.predict("channel", -1, None, 5, api_name="/neuron"), "channels 0-1279"),
        (lambda: client.predict("words", "tag", "learned", "dog, qwzx", 300, api_name="/map"), "qwzx"),
        (lambda: client.predict(handle_file(str(corrupt)), "", api_name="/explain"), "corrupt or truncated"),
        (lambda: client.predict(handle_file(photo("chelsea")), "a qwzx", api_name="/explain"), "qwzx"),
        (lambda: client.predict(handle_file(str(corrupt)), api_name="/layers"), "corrupt or truncated"),
    ]
    for call, message in cases:
        with pytest.raises(Exception, match=message):
            call()
    for upload in (corrupt, garbage):  # the library's reason, then gradio failing to open it: both name the file only
        with pytest.raises(Exception) as error:
            client.predict(handle_file(str(upload)), 3, api_name="/caption")
        assert "gradio/" not in str(error.value) and "/tmp" not in str(error.value)  # no server paths
    assert client.predict(handle_file(str(big)), 1, api_name="/caption")  # big but valid: answered
    assert client.predict("man", "king", "woman", "3cosadd", "glove", 1, api_name="/analogy")["data"]


# Every endpoint's parameters, as a Python user passes them to `client.predict` (the library's argument names).
API_PARAMETERS = {
    "/caption": ["image", "beam_size"],
    "/tag": ["image", "k"],
    "/similar_words": ["text", "space", "k"],
    "/analogy": ["a", "b", "c", "method", "space", "k"],
    "/similar_images": ["image", "row", "k", "focus_class"],
    "/search": ["text", "method", "k"],
    "/map": ["subject", "color_by", "space", "words", "top_words"],
    "/neuron": ["kind", "number", "image", "k"],
    "/explain": ["image", "caption"],
    "/layers": ["image"],
    "/visualize": ["kind", "target", "steps", "seed"],
    "/imagine": ["text", "steps", "seed"],
    "/dream": ["image", "stage", "strength", "steps"],
    "/style": ["content", "style_image", "style_weight", "steps"],
}
INTEGER_PARAMETERS = {"beam_size", "k", "row", "top_words", "number", "steps", "seed"}
FLOAT_PARAMETERS = {"strength", "style_weight"}  # the only numbers that may be fractional


def test_the_api_names_every_parameter_and_types_counts_as_integers(client):
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {name: [p["parameter_name"] for p in api[name]["parameters"]] for name in api} == API_PARAMETERS
    for name, endpoint in api.items():
        for parameter in endpoint["parameters"]:
            python_type = parameter["python_type"]["type"]
            if parameter["parameter_name"] in INTEGER_PARAMETERS:
                assert (parameter["type"]["type"], python_type) == ("integer", "int"), (name, parameter)
            else:
                assert python_type != "int" and (python_type == "float") == (
                    parameter["parameter_name"] in FLOAT_PARAMETERS
                ), (name, parameter)
        for output in endpoint["returns"]:  # gradio_client names a result by its label
            assert re.fullmatch(r"[A-Z][A-Za-z ]*", output["label"]), (name, output["label"])
    text = client.view_api(return_format="str", print_info=False)
    assert "param_" not in text
    assert client.predict(image=handle_file(photo("chelsea")), beam_size=2, api_name="/caption")  # by keyword
    imagined = client.predict(text="a dog runs on the beach", steps=2, seed=1, api_name="/imagine")
    assert Image.open(imagined).size == (260, 260)


def test_a_user_error_reaches_the_page_paths_cut_and_leaves_no_traceback_in_the_log(app):
    @app.user_errors
    def refused():
        raise OneNetError("/srv/private/holiday.jpg: not an image")

    with pytest.raises(app.gr.Error) as caught:
        refused()
    assert caught.value.message == "holiday.jpg: not an image" and caught.value.print_exception is False


def test_only_pillow_s_errors_on_an_upload_are_blamed_on_it(app, monkeypatch, tmp_path):
    upload = tmp_path / "notes.png"
    upload.write_text("not an image")
    monkeypatch.setattr(app.gr.Image, "preprocess", lambda self, payload: Image.open(upload))
    with pytest.raises(app.gr.Error, match="the upload is not an image OneNet can read"):
        app.image_input("photo").preprocess(None)
    monkeypatch.setattr(app.gr.Image, "preprocess", lambda self, payload: {}["a bug in gradio"])
    with pytest.raises(KeyError):  # not hidden behind "not an image": gradio logs its traceback
        app.image_input("photo").preprocess(None)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)

    def out_of_memory(self):
        raise MemoryError  # raised inside Image.open, yet the machine's fault, not the upload's

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open", out_of_memory)
    monkeypatch.setattr(app.gr.Image, "preprocess", lambda self, payload: Image.open(photo))
    with pytest.raises(MemoryError):
        app.image_input("photo").preprocess(None)


def test_an_upload_that_is_not_an_image_is_told_so_and_the_server_keeps_serving(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("a shopping list, not a photo\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cases = [
        (text, "/caption", "the upload is not an image OneNet can read (notes.png: not an image file"),
        (empty, "/caption", "the upload is not an image OneNet can read (empty.png: the file is empty)"),
        (text, "/tag", "notes.png: not an image file"),
        (text, "/layers", "notes.png: not an image file"),
    ]
    for upload, endpoint, message in cases:
        arguments = {"image": handle_file(str(upload))} | ({"k": 3} if endpoint == "/tag" else {})
        with pytest.raises(Exception, match=re.escape(message)) as error:
            client.predict(**arguments, api_name=endpoint)
        assert "verbose error" not in str(error.value) and "/tmp" not in str(error.value)
    assert "motorcycle" in client.predict(image=handle_file(photo("motorcycle_left")), api_name="/caption")


def test_search_results_come_as_json_a_program_reads(client, space):
    shown, matches = client.predict(text="a man riding a motorcycle", method="reranked", k=4, api_name="/search")
    assert len(matches) == 4 and all(set(m) == {"row", "name", "gallery_path", "score"} for m in matches)
    assert [f"{m['name']} ({m['score']:.3f})" for m in matches] == [item["caption"] for item in shown]
    assert [m["score"] for m in matches] == sorted((m["score"] for m in matches), reverse=True)
    assert all(Path(space.index.paths[m["row"]]).name == m["name"] == m["gallery_path"] for m in matches)  # no folder
    first = matches[0]
    similar, like_first = client.predict(image=None, row=first["row"], k=3, api_name="/similar_images")
    assert len(like_first) == 3 and first["row"] not in [m["row"] for m in like_first]  # itself left out
    assert [m["name"] for m in like_first] == [item["caption"].rsplit(" (", 1)[0] for item in similar]
    assert all(isinstance(m["row"], int) and isinstance(m["score"], float) for m in like_first)


def test_the_space_s_caps_are_stricter_than_the_library_s(space):
    with pytest.raises(OneNetError, match="beam_size must be an integer from 1 to 8, got 9"):
        space.caption(photo("chelsea"), 9)
    with pytest.raises(OneNetError, match="k must be an integer from 1 to 50, got 51"):
        space.similar_words("dog", "learned", 51)


def test_only_the_gallery_s_thumbnails_are_served(server, space):
    httpx = pytest.importorskip("httpx")
    secret = space.folder / ".env"
    secret.write_text("TOKEN=secret\n")
    try:
        beside_photos = Path(space.index.paths[0]).parent / "README.txt"  # scikit-image's data folder
        private = [secret, beside_photos, space.folder / "index" / "index.sqlite", space.folder, Path.home()]
        assert beside_photos.is_file()
        for path in private:
            response = httpx.get(f"{server}gradio_api/file={path}")
            assert response.status_code in (403, 404), path
        examples = {str(p) for p in example_photos()}  # served as they are: a visitor sends them
        shown = next(path for path in space.index.paths if path not in examples)
        assert httpx.get(f"{server}gradio_api/file={shown}").status_code == 403  # sent as its thumbnail only
        thumbnail = httpx.get(f"{server}gradio_api/file={space.thumbnails[shown]}")
        assert thumbnail.status_code == 200 and max(Image.open(io.BytesIO(thumbnail.content)).size) <= 320
    finally:
        secret.unlink()  # the module's Space folder is shared: leave it as the other tests find it


def test_adding_photos_exists_only_when_uploads_are_allowed(app, space):
    def add_handlers(demo) -> int:
        return sum(fn.name == "add_images" for fn in demo.fns.values())

    assert not space.allow_uploads and add_handlers(app.build_demo(space)) == 0
    space.allow_uploads = True
    try:
        assert add_handlers(app.build_demo(space)) == 1
    finally:
        space.allow_uploads = False
    with pytest.raises(OneNetError, match="adding photos is turned off"):
        space.add_images([photo("chelsea")])


def test_every_tab_in_headless_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(server)

        def tab(name: str):
            page.get_by_role("tab", name=name).click()
            return page.locator(".tabitem:visible").first

        def upload_and_click(panel, stem: str, button: str) -> None:
            panel.locator("input[type=file][accept='image/*']").first.set_input_files(photo(stem))
            panel.get_by_role("button", name=button).click()

        panel = tab("Caption")
        upload_and_click(panel, "motorcycle_left", "Caption")
        sync_api.expect(panel.get_by_label("Caption")).to_have_value(
            __import__("re").compile("motorcycle"), timeout=60_000
        )
        page.screenshot(path=ARTIFACTS / "caption.png")

        panel = tab("Tag")
        upload_and_click(panel, "chelsea", "Tag")
        sync_api.expect(panel.get_by_text("Egyptian cat").filter(visible=True).first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "tag.png")

        panel = tab("Similar words")
        panel.get_by_label("Word(s)").fill("beach")
        panel.get_by_role("button", name="Find").click()
        sync_api.expect(panel.get_by_text("shore", exact=True).filter(visible=True).first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "similar_words.png")

        panel = tab("Analogy")
        panel.get_by_label("c", exact=True).fill("woman")
        panel.get_by_role("button", name="Solve").click()
        sync_api.expect(panel.get_by_text("queen", exact=True).filter(visible=True).first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "analogy.png")

        panel = tab("Similar images")
        upload_and_click(panel, "camera", "Search")
        sync_api.expect(panel.get_by_text("(0.", exact=False).first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "similar_images.png")
        # the upload has a gallery photo's bytes: it is that gallery row, left out of its own results
        sync_api.expect(panel.get_by_text("camera.png (").filter(visible=True)).to_have_count(0)
        panel.locator("button.thumbnail-item").nth(3).click()  # the motorbike: the click becomes the query
        sync_api.expect(panel.get_by_text("(1.000)").filter(visible=True)).to_have_count(0, timeout=60_000)
        sync_api.expect(panel.get_by_text("motorcycle_left.png (").filter(visible=True)).to_have_count(0)
        page.screenshot(path=ARTIFACTS / "similar_images_clicked.png")

        panel = tab("Describe to search")
        panel.get_by_label("Description").fill("a man riding a motorcycle")
        panel.get_by_role("button", name="Search").click()
        sync_api.expect(panel.get_by_text("motorcycle_", exact=False).first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "search.png")

        panel.get_by_label("Description").fill("   ")
        panel.get_by_role("button", name="Search").click()
        sync_api.expect(page.get_by_text("the text is empty").first).to_be_visible(timeout=30_000)
        page.screenshot(path=ARTIFACTS / "error.png")

        page.goto(server)  # a fresh page: the error toast above would cover the Explore screenshots
        tab("Explore")

        def explore_tab(name: str):
            page.get_by_role("tab", name=name).click()
            return page.locator(".tabitem:visible .tabitem:visible").first

        panel = explore_tab("Map")
        panel.get_by_role("button", name="Draw the map").click()
        sync_api.expect(panel.locator(".js-plotly-plot").first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "explore_map.png")

        panel = explore_tab("Neurons")
        show, number = panel.get_by_role("button", name="Show"), panel.locator("input[type=number]").first
        sync_api.expect(show).to_be_visible(timeout=30_000)
        for _ in range(20):  # a late mount of the tab can reset the number to 0 after a fill: fill until it holds
            number.fill("17")
            page.wait_for_timeout(500)
            if number.input_value() == "17":
                break
        sync_api.expect(number).to_have_value("17")
        show.click()
        sync_api.expect(panel.get_by_text("unit 17").filter(visible=True).first).to_be_visible(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "explore_neurons.png")

        panel = explore_tab("Explain")
        upload_and_click(panel, "motorcycle_left", "Explain")
        sync_api.expect(panel.get_by_text("motorcycle (log p").filter(visible=True).first).to_be_visible(timeout=90_000)
        page.screenshot(path=ARTIFACTS / "explore_explain.png")

        panel = explore_tab("Layer by layer")
        upload_and_click(panel, "chelsea", "Show the layers")
        sync_api.expect(panel.get_by_text("stage 7", exact=True).filter(visible=True).first).to_be_visible(
            timeout=60_000
        )
        page.screenshot(path=ARTIFACTS / "explore_layers.png")
        browser.close()
    assert len(list(ARTIFACTS.glob("*.png"))) >= 11


@pytest.fixture
def space_process(tmp_path):
    """`python -m onenet_hf.space` as its own process on a free loopback port, stopped after the test.

    The Create tabs get a process of their own: a stream the browser leaves is still stepped by gradio in a
    daemon thread, which the process waits for at exit only when its server is closed (`_CreateRuns`); in
    the test process an abort there would turn pytest's exit status into 134."""
    import subprocess
    import sys
    import time

    port = _free_port()
    command = [sys.executable, "-m", "onenet_hf.space", "--model", str(CHECKPOINT), "--port", str(port)]
    process = subprocess.Popen([*command, "--index-dir", str(tmp_path / "space")], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, "the Space process ended before serving"
            time.sleep(1)
        else:
            pytest.fail("the Space process did not serve within 5 minutes")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_imagine_tabs_in_headless_chromium(space_process):
    server = space_process
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(server)
        page.get_by_role("tab", name="Create").click()

        def imagine_tab(name: str, steps: int, steps_box: int = 0):
            page.get_by_role("tab", name=name).click()
            panel = page.locator(".tabitem:visible .tabitem:visible").first
            panel.locator("input[type=number]").nth(steps_box).fill(str(steps))  # the steps slider's box
            return panel

        def finished(panel, shot: str) -> None:
            """Wait until the run's progress ("12/48 steps") has gone and its picture shows, both for 3 s in a
            row (the progress flickers between streamed frames), at most 3 minutes; then take the screenshot."""
            running = panel.get_by_text(re.compile(r"\d+/\d+ steps"))
            output = panel.locator("[data-testid='image'] img, .image-container img").last
            settled = 0
            for _ in range(360):
                done = running.count() == 0 and output.count() > 0 and output.is_visible()
                settled = settled + 1 if done else 0
                if settled >= 6:
                    break
                page.wait_for_timeout(500)
            assert settled >= 6, f"{shot}: no finished picture within 3 minutes"
            page.screenshot(path=ARTIFACTS / shot)

        panel = imagine_tab("Visualize", 16)
        panel.get_by_role("button", name="Visualize").click()
        finished(panel, "imagine_visualize.png")

        panel = imagine_tab("Imagine a caption", 16)
        panel.get_by_role("button", name="Imagine").click()
        finished(panel, "imagine_caption.png")

        panel = imagine_tab("DeepDream", 12, steps_box=1)  # after the strength slider's
        panel.locator("input[type=file][accept='image/*']").first.set_input_files(photo("chelsea"))
        panel.get_by_role("button", name="Dream").click()
        finished(panel, "imagine_dream.png")

        panel = imagine_tab("Style transfer", 24, steps_box=1)  # after the style weight's
        files = panel.locator("input[type=file][accept='image/*']")
        files.nth(0).set_input_files(photo("astronaut"))
        files.nth(1).set_input_files(photo("coffee"))
        panel.get_by_role("button", name="Transfer the style").click()
        finished(panel, "imagine_style.png")
        browser.close()
    assert len(list(ARTIFACTS.glob("imagine_*.png"))) == 4


def test_captions_and_tags_use_onnxruntime_when_the_checkpoint_is_exported(
    shapes_model_with_heads, shapes_dir, tmp_path, capsys
):
    from onenet_hf.onnx.backend import OnnxOneNetBackend
    from onenet_hf.onnx.export import export_onnx

    model = tmp_path / "model"  # a copy: the shared model folder must not gain an onnx/ that other tests would use
    shutil.copytree(shapes_model_with_heads, model, ignore=shutil.ignore_patterns("*.pt"))
    images = shapes_dir / "images"
    without = OneNetSpace(model, images, cache_dir=tmp_path / "a", export_cache=None)
    assert without.net.onnx is None
    export_onnx(model, model / "onnx", int8_dynamic=False)
    no_cache = OneNetSpace(model, images, cache_dir=tmp_path / "c", export_cache=None)
    assert no_cache.net.onnx is None  # no int8 graphs and nowhere to export them: PyTorch
    space = OneNetSpace(model, images, cache_dir=tmp_path / "b", onnx_variant="fp32", export_cache=tmp_path / "x")
    assert not (tmp_path / "x").exists()  # the model's own fp32 export serves
    assert isinstance(space.net.onnx, OnnxOneNetBackend) and space.net.onnx.has_pooled_features
    for image in map(str, sorted(images.glob("dev_*.jpg"))[:3]):
        assert space.caption(image, 2) == without.caption(image, 2)
        (words, labels, _), (torch_words, torch_labels, _) = space.tag(image, 5), without.tag(image, 5)
        assert [w for w, _ in words] == [w for w, _ in torch_words]
        assert np.allclose([s for _, s in words], [s for _, s in torch_words], atol=2e-4)
        assert [w for w, _ in labels] == [w for w, _ in torch_labels]
    assert not (shapes_model_with_heads / "onnx").exists()
    capsys.readouterr()
    exports = tmp_path / "exports"  # the int8 graphs the model lacks: exported once, then found there
    first = OneNetSpace(model, images, cache_dir=tmp_path / "d", export_cache=exports)
    assert f"once into {exports / model_fingerprint(first.net.model)}" in capsys.readouterr().err
    assert first.net.onnx.variant == "int8-dynamic" and first.net.onnx.has_decoder
    assert first.net.gallery_embedder().description == "onnxruntime, image_encoder.onnx"  # fastest there: fp32
    again = OneNetSpace(model, images, cache_dir=tmp_path / "d", export_cache=exports)
    assert "exporting" not in capsys.readouterr().err and again.net.onnx.has_decoder
    assert again.caption(str(sorted(images.glob("dev_*.jpg"))[0]), 2)


def test_concurrent_visitors_share_batches_and_each_gets_their_own_answer(client, space, tmp_path):
    photos = [photo(stem) for stem in ("chelsea", "astronaut", "coffee", "rocket", "motorcycle_left", "camera")]
    ks = [1, 2, 3, 4, 5, 6]
    alone_captions = [space.net.caption(p, 3)[0].text for p in photos]
    alone_tags = [
        ([w.word for w in tags.words], [w.word for w in tags.imagenet])
        for p, k in zip(photos, ks, strict=True)
        for tags in space.net.tag(p, k)
    ]
    mixed = [(load_image(p), beam) for p, beam in zip(photos[:3], (1, 3, 1), strict=True)]  # beams regrouped
    assert space._caption_batch(mixed) == [space.net.caption(image, beam)[0].text for image, beam in mixed]
    corrupt = tmp_path / "corrupt.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])  # a JPEG cut off half-way
    batches = {"caption": [], "tag": []}
    runs = space._captions.run_batch, space._tags.run_batch

    def recorded(run, sizes):
        return lambda items: sizes.append(len(items)) or run(items)

    space._captions.run_batch = recorded(runs[0], batches["caption"])
    space._tags.run_batch = recorded(runs[1], batches["tag"])
    space._answers.clear()  # nothing answered from cache: every request is computed
    try:
        jobs = [client.submit(handle_file(p), 3, api_name="/caption") for p in photos]
        bad = client.submit(handle_file(str(corrupt)), 3, api_name="/caption")
        tag_jobs = [client.submit(handle_file(p), k, api_name="/tag") for p, k in zip(photos, ks, strict=True)]
        assert [job.result(timeout=120) for job in jobs] == alone_captions
        tagged = [job.result(timeout=120) for job in tag_jobs]
        assert [
            ([w for w, _ in words["data"]], [w for w, _ in labels["data"]]) for words, labels, _ in tagged
        ] == alone_tags
        with pytest.raises(Exception, match="corrupt or truncated"):  # its own error, no one else's
            bad.result(timeout=120)
        assert max(batches["caption"]) > 1 and max(batches["tag"]) > 1  # visitors shared model passes
        assert sum(batches["caption"]) == len(photos) and sum(batches["tag"]) == len(photos)
        assert client.predict(handle_file(photos[0]), 3, api_name="/caption") == alone_captions[0]
        assert sum(batches["caption"]) == len(photos)  # that answer came from the cache
    finally:
        space._captions.run_batch, space._tags.run_batch = runs


def _png(path: Path, value: int) -> str:
    Image.fromarray(np.full((64, 64, 3), value, dtype=np.uint8)).save(path)
    return str(path)


def test_added_photos_join_the_gallery_by_content_and_within_limits(shapes_model_with_heads, shapes_dir, tmp_path):
    images = shapes_dir / "images"
    options = {"cache_dir": tmp_path, "export_cache": None}
    space = OneNetSpace(shapes_model_with_heads, images, allow_uploads=True, max_upload_files=3, **options)
    before = len(space.gallery_items())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, other = _png(tmp_path / "a" / "photo.png", 200), _png(tmp_path / "b" / "photo.png", 50)
    assert len(space.add_images([first, other])) == before + 2  # one name, two photos: both kept
    assert len(space.add_images([first])) == before + 2  # the same bytes again: the same photo
    assert len(list(space.added.iterdir())) == 2
    assert len(OneNetSpace(shapes_model_with_heads, images, **options).index) == before + 2  # kept
    matches = [space._match(space.index, path, 0.5) for path in space.index.paths]  # how results name photos
    assert [m["row"] for m in matches] == list(range(before + 2))
    added = {f"added/{path.name}" for path in space.added.iterdir()}
    assert {m["gallery_path"] for m in matches if "/" in m["gallery_path"]} == added  # never a server folder
    assert {m["gallery_path"] for m in matches} - added == {path.name for path in images.iterdir()}
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"garbage")
    cases = [
        ([str(broken)], "not an image"),
        ([], "no files"),
        ([first] * 4, "add at most 3 photos at a time"),
        ([str(tmp_path / "notes.txt")], "only .bmp, .gif"),
    ]
    (tmp_path / "notes.txt").write_text("text")
    for files, message in cases:
        with pytest.raises(OneNetError, match=message):
            space.add_images(files)
    new = _png(tmp_path / "new.png", 120)
    space.max_upload_bytes = Path(new).stat().st_size - 1
    with pytest.raises(OneNetError, match="larger than"):
        space.add_images([new])
    added = sum(p.stat().st_size for p in space.added.iterdir())
    space.max_upload_bytes, space.max_added_bytes = 10**6, added + Path(new).stat().st_size - 1
    with pytest.raises(OneNetError, match="added photos would pass"):
        space.add_images([new])
    assert len(space.index) == before + 2 and len(list(space.added.iterdir())) == 2


def test_at_exit_no_imagine_step_starts_and_the_running_one_is_waited_for():
    """A stream whose visitor left is still stepped by gradio in a daemon thread; a thread inside PyTorch when
    the interpreter finalises aborts the process, so exiting waits for the step and starts no other."""
    import threading

    from onenet_hf.space.service import _CreateRuns

    runs, started, release, stepped = _CreateRuns(), threading.Event(), threading.Event(), []

    def snapshots():
        for step in range(1, 4):
            started.set()
            release.wait(10)
            yield step

    def visitor_who_left():
        stepped.extend(runs.steps(snapshots()))

    worker = threading.Thread(target=visitor_who_left, daemon=True)
    worker.start()
    assert started.wait(10)  # step 1 is being computed
    threading.Timer(0.3, release.set).start()  # it ends a moment after the exit begins
    runs.close(timeout=10)
    assert release.is_set()  # close returned only once the running step could end
    worker.join(10)
    assert stepped == [1]  # the running step was waited for; no later step started


async def _post(middleware, path: str, headers: dict[bytes, bytes]) -> int | None:
    """The status `middleware` answers a POST to `path` with; None: it passed the request on."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": list(headers.items())}
    await middleware(scope, None, send)
    return next((m["status"] for m in sent if m["type"] == "http.response.start"), None)


def test_uploads_past_the_disk_budget_are_refused_before_anything_is_stored(tmp_path):
    import asyncio

    from onenet_hf.space.service import UploadBudget

    passed = []

    async def gradio(scope, receive, send):
        passed.append(scope["path"])
        if scope["path"].endswith("/upload"):  # while it streams in, a second upload that would pass is refused
            passed.append(await _post(budget, "/gradio_api/upload", {b"content-length": b"600"}))

    budget = UploadBudget(gradio, tmp_path, max_bytes=1_000)
    (tmp_path / "stored").write_bytes(b"x" * 300)

    def post(path, headers):
        return asyncio.run(_post(budget, path, headers))

    assert post("/gradio_api/upload", {b"content-length": b"500"}) is None
    assert passed == ["/gradio_api/upload", 507]  # 300 stored + 500 streaming + 600 > 1,000
    assert post("/gradio_api/upload", {b"content-length": b"701"}) == 507
    assert post("/gradio_api/upload", {}) == 411  # no declared size: no way to bound it
    assert post("/gradio_api/queue/join", {}) is None  # other routes pass untouched
    assert budget._streaming == 0 and passed[-1] == "/gradio_api/queue/join"


def test_the_upload_budget_walks_the_folder_at_most_every_few_seconds_and_counts_uploads_since(tmp_path, monkeypatch):
    import asyncio

    from onenet_hf.space import service as space_module

    walks = []
    monkeypatch.setattr(space_module, "folder_bytes", lambda folder: walks.append(folder) or 300)

    async def gradio(scope, receive, send):
        return None  # stores nothing: what the budget counts is what uploads declared

    budget = space_module.UploadBudget(gradio, tmp_path, max_bytes=1_000)

    def post(size: int):
        return asyncio.run(_post(budget, "/gradio_api/upload", {b"content-length": str(size).encode()}))

    assert post(500) is None and post(150) is None and len(walks) == 1  # 300 + 500 + 150: one walk for both
    assert post(100) == 507  # 300 walked + 650 stored since + 100 > 1,000, until the next walk
    monkeypatch.setattr(space_module, "UPLOAD_WALK_SECONDS", 0.0)
    assert post(100) is None and len(walks) == 2  # walked again: the folder holds 300


def test_the_upload_folder_s_size_counts_nothing_for_a_file_deleted_while_it_is_walked(tmp_path, monkeypatch):
    from onenet_hf.space import service as space_module

    (tmp_path / "kept").write_bytes(b"x" * 300)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "deleted").write_bytes(b"x" * 500)
    stat = os.stat

    def stat_racing_delete_cache(path, *args, **kwargs):
        if str(path).endswith("deleted"):
            os.unlink(path)  # gradio's delete_cache, between the listing and the stat
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(space_module.os, "stat", stat_racing_delete_cache)
    assert space_module.folder_bytes(tmp_path) == 300
    assert space_module.folder_bytes(tmp_path / "nowhere") == 0


def test_caption_and_tag_requests_decode_a_bounded_number_of_uploads_at_once(monkeypatch):
    import threading
    import time

    from onenet_hf.space import service as space_module

    running, most, lock = [0], [0], threading.Lock()

    def slow_load(image):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return image

    monkeypatch.setattr(space_module, "load_image", slow_load)
    threads = [threading.Thread(target=space_module.bounded_load, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most[0] == space_module.SPACE_MAX_DECODES == 2


def test_heavy_events_share_a_bounded_number_of_slots_and_uploads_are_bounded_on_disk(app, space, monkeypatch):
    from onenet_hf.space.service import (
        MAX_UPLOAD_BYTES,
        SPACE_DELETE_CACHE,
        SPACE_MAX_HEAVY_JOBS,
        RequestBodyLimit,
        UploadBudget,
    )

    demo = app.build_demo(space)
    heavy = {"visualize", "imagine", "dream", "style", "explain", "layers", "neuron", "map", "similar_images"}
    groups = {fn.api_name: (fn.concurrency_id, fn.concurrency_limit) for fn in demo.fns.values()}
    assert all(groups[name] == ("heavy", SPACE_MAX_HEAVY_JOBS) for name in heavy)
    assert groups["caption"][0] != "heavy" and demo.delete_cache == SPACE_DELETE_CACHE
    options = app.launch_options(space)
    assert options["max_file_size"] == MAX_UPLOAD_BYTES
    assert [m.cls for m in options["app_kwargs"]["middleware"]] == [UploadBudget, RequestBodyLimit]
    monkeypatch.setattr(space, "max_upload_bytes", 50_000_000)  # OneNetSpace(max_upload_bytes=...) above 20 MB
    assert app.launch_options(space)["max_file_size"] == 50_000_000


def test_an_upload_over_the_size_limit_is_refused_as_it_streams_in(server):
    httpx = pytest.importorskip("httpx")
    from gradio.utils import get_upload_folder

    from onenet_hf.space.service import MAX_UPLOAD_BYTES, folder_bytes

    before = folder_bytes(get_upload_folder())
    big = {"files": ("big.jpg", b"\xff" * (MAX_UPLOAD_BYTES + 1), "image/jpeg")}
    response = httpx.post(f"{server}gradio_api/upload", files=big, timeout=60)
    assert response.status_code == 413 and folder_bytes(get_upload_folder()) <= before


def test_a_call_carrying_a_photo_inline_is_bounded_as_an_upload_is(server, tmp_path):
    """A data URL in a call's JSON is decoded into a stored file by gradio, past `max_file_size` and the upload
    budget; the request's body is bounded instead: refused whole when declared too large, cut when it is not."""
    import asyncio

    httpx = pytest.importorskip("httpx")
    from gradio.utils import get_upload_folder

    from onenet_hf.space.service import MAX_UPLOAD_BYTES, RequestBodyLimit, folder_bytes

    before = folder_bytes(get_upload_folder())
    inline = "data:image/png;base64," + "A" * (MAX_UPLOAD_BYTES * 4 // 3 + 1_000_000)
    call = {"data": [{"path": None, "url": inline, "meta": {"_type": "gradio.FileData"}}, 3]}
    response = httpx.post(f"{server}gradio_api/call/caption", json=call, timeout=60)
    assert response.status_code == 413 and "upload photos as files" in response.text
    assert folder_bytes(get_upload_folder()) <= before
    small = Image.new("RGB", (40, 30), "red")
    buffer = io.BytesIO()
    small.save(buffer, "PNG")
    inline = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    call = {"data": [{"path": None, "url": inline, "meta": {"_type": "gradio.FileData"}}, 3]}
    assert httpx.post(f"{server}gradio_api/call/caption", json=call, timeout=60).status_code == 200  # within

    received = []

    async def gradio(scope, receive, send):
        while (message := await receive())["type"] == "http.request" and message.get("more_body"):
            pass
        received.append(message["type"])

    limit = RequestBodyLimit(gradio, max_photo_bytes=30)  # 30 * 4 // 3 + 1,000,000 bytes
    chunks = iter([b"x" * 600_000, b"x" * 600_000])

    async def receive():
        return {"type": "http.request", "body": next(chunks), "more_body": True}

    scope = {"type": "http", "method": "POST", "path": "/gradio_api/queue/join", "headers": []}  # no size declared
    asyncio.run(limit(scope, receive, None))
    assert received == ["http.disconnect"]  # cut once more than the limit arrived
