"""Image loading: every common mode comes out as upright RGB, and bad files fail with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from onenet_hf import ImageLoadError, OneNetImageProcessor, load_image
from onenet_hf.images import MAX_IMAGE_PIXELS, MAX_LOADED_SIDE, REDUCED_PIXELS
from tests.conftest import png_claiming_size, png_with_chunk

RED = (200, 20, 20)
# a QOI header (64x48 RGB) and pixel operations that end half-way: Pillow's decoder raises IndexError
TRUNCATED_QOI = bytes.fromhex("716f6966000000400000003003 01fec81e1e fdfdfdfdfdfdfd".replace(" ", ""))


def _pixel(image: Image.Image, xy=(5, 5)) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel(xy)


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: viewers turn it 90 degrees clockwise
    image.save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    loaded = load_image(tmp_path / "rotated.jpg")
    assert loaded.size == (20, 40)
    top, bottom = np.asarray(loaded)[5, 10], np.asarray(loaded)[35, 10]
    assert top[0] > 150 and top[2] < 80  # the red half is now on top
    assert bottom[2] > 150


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: Image.new("L", (10, 10), 128), (128, 128, 128)),
        (lambda: Image.new("RGBA", (10, 10), (*RED, 255)), RED),
        (lambda: Image.new("RGBA", (10, 10), (*RED, 0)), (255, 255, 255)),
        (lambda: Image.new("LA", (10, 10), (50, 255)), (50, 50, 50)),
        (lambda: Image.new("CMYK", (10, 10), (0, 255, 255, 0)), (255, 0, 0)),
        (lambda: Image.new("RGB", (10, 10), RED).convert("P", palette=Image.Palette.ADAPTIVE), RED),
        (lambda: Image.fromarray(np.full((10, 10), 65535 // 2, dtype=np.uint16)), (128, 128, 128)),
        (lambda: Image.fromarray(np.full((10, 10), 1000, dtype=np.int32)), (4, 4, 4)),
    ],
    ids=["grey", "rgba", "transparent", "grey-alpha", "cmyk", "palette", "16-bit", "32-bit-int"],
)
def test_modes_become_rgb(make, expected):
    assert _pixel(load_image(make())) == pytest.approx(expected, abs=2)


def test_palette_with_transparency_is_flattened_on_white(tmp_path):
    image = Image.new("P", (10, 10), 0)
    image.putpalette([*RED, 0, 0, 0] + [0] * 762)
    image.info["transparency"] = 0
    image.save(tmp_path / "transparent.png")
    assert _pixel(load_image(tmp_path / "transparent.png")) == (255, 255, 255)


def test_16bit_png_file(tmp_path):
    Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16)).save(tmp_path / "deep.png")
    assert _pixel(load_image(tmp_path / "deep.png")) == (255, 255, 255)


def test_preprocess_gives_normalised_260px_tensor():
    processor = OneNetImageProcessor()
    pixels = processor(
        [Image.new("RGB", (300, 200), (255, 0, 127)), np.zeros((50, 60, 3), np.uint8)], return_tensors="pt"
    )["pixel_values"]
    assert tuple(pixels.shape) == (2, 3, 260, 260)
    assert pixels[0, :, 100, 100].tolist() == pytest.approx([1.0, -127 / 128, 0.0], abs=1e-3)
    assert pixels[1].max().item() == pytest.approx(-127 / 128, abs=1e-4)


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("notes.jpg", lambda p: p.write_text("not a picture"), "not an image"),
        ("empty.png", lambda p: p.write_bytes(b""), "not an image"),
        ("corrupt.png", lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50), "not an image"),
        ("tiny.png", lambda p: Image.new("RGB", (1, 1)).save(p), "too small"),
        ("bomb.png", lambda p: png_claiming_size(p, 100_000, 100_000), r"too large \(over 89.5 megapixels\); the"),
        ("big.png", lambda p: png_claiming_size(p, 7000, 6000), r"too large \(7000x6000 = 42.0 megapixels\)"),
        ("text_bomb.png", lambda p: png_with_chunk(p, b"zTXt", b"Comment\x00\x00"), "damaged image .*MAX_TEXT_CHUNK"),
        ("profile_bomb.png", lambda p: png_with_chunk(p, b"iCCP", b"icc\x00\x00"), "damaged image .*MAX_TEXT_CHUNK"),
        ("cut.qoi", lambda p: p.write_bytes(TRUNCATED_QOI), r"damaged image \(IndexError"),  # any decoder's error
    ],
)
def test_bad_files_raise_clear_errors(tmp_path, name, write, message):
    path = tmp_path / name
    write(path)
    with pytest.raises(ImageLoadError, match=message) as error:
        load_image(path)
    assert name in str(error.value)


def test_the_pixel_limit_is_read_from_the_header_and_named_in_the_error(tmp_path):
    png_claiming_size(tmp_path / "bomb.png", 6400, 6400)  # 41 megapixels claimed, 8x8 stored: never decoded
    with pytest.raises(ImageLoadError, match="the limit is 40.0 megapixels"):
        load_image(tmp_path / "bomb.png")
    assert MAX_IMAGE_PIXELS == 40_000_000


def test_large_images_come_out_reduced_upright_and_flattened(tmp_path):
    image = Image.new("RGBA", (3000, 2100), (0, 0, 255, 255))
    image.paste((*RED, 255), (0, 0, 1500, 2100))  # left half red
    image.paste((0, 0, 0, 0), (2900, 0, 3000, 2100))  # a transparent strip on the right
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers turn it 90 degrees clockwise: the red half goes on top
    image.save(tmp_path / "large.png", exif=exif)
    loaded = load_image(tmp_path / "large.png")
    assert loaded.size == (1050, 1500)  # reduced by 2 on both sides, then turned upright
    pixels = np.asarray(loaded)
    assert tuple(pixels[100, 500]) == RED and tuple(pixels[1000, 500]) == (0, 0, 255)
    assert tuple(pixels[1490, 500]) == (255, 255, 255)  # the transparent strip, flattened on white


@pytest.mark.parametrize(
    ("size", "mode", "suffix", "expected"),
    [
        ((20_000, 300), "RGB", "png", (10_000, 150)),  # 6 megapixels, short side 300: halved both ways
        ((9_000, 500), "F", "tif", (4_500, 250)),  # a float TIFF: reduced before it is scaled to 8 bits
        ((8_000, 600), "RGB", "jpg", (4_000, 300)),  # a thin JPEG: drafted at 1/2 scale as it is decoded
        ((40_000, 2), "L", "png", (13_333, 2)),  # too thin to halve: only its length is reduced, to fit
    ],
)
def test_elongated_images_are_bounded_by_area_not_by_their_short_side(tmp_path, size, mode, suffix, expected):
    path = tmp_path / f"thin.{suffix}"
    Image.new(mode, size, 120).save(path)
    loaded = load_image(path)
    assert loaded.size == expected and loaded.mode == "RGB"
    assert loaded.width * loaded.height < 4 * REDUCED_PIXELS and max(loaded.size) <= MAX_LOADED_SIDE
    assert load_image(loaded) is loaded  # a loaded image is within the budget: not reduced again


def test_images_given_in_memory_are_bounded_too():
    assert load_image(Image.new("RGB", (5_000, 1_000))).size == (2_500, 500)
    assert load_image(np.zeros((1_000, 5_000, 3), dtype=np.uint8)).size == (2_500, 500)


PEAK_PROBE = """
import sys
from onenet_hf.images import load_image

def status(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS:")
load_image(sys.argv[1])
print((status("VmHWM:") - before) // 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak from /proc")
def test_an_elongated_float_tiff_costs_its_decoded_frame_and_little_more(tmp_path):
    """The issue's case: a 269 KB float TIFF of 39,990x1,000 cost +916 MB to load; its frame is 160 MB."""
    Image.new("F", (39_990, 1_000), 0.5).save(tmp_path / "thin.tif", compression="tiff_deflate")
    result = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(tmp_path / "thin.tif")], capture_output=True, text=True, check=True
    )
    assert int(result.stdout) < 260  # MB above the process before loading: the 160 MB frame and the reduction


def test_a_directory_is_named_as_one(tmp_path):
    (tmp_path / "photos.jpg").mkdir()
    with pytest.raises(ImageLoadError, match="photos.jpg: is a directory"):
        load_image(tmp_path / "photos.jpg")


def test_truncated_jpeg(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(
        tmp_path / "full.jpg"
    )
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(tmp_path / "cut.jpg")


def test_missing_file_and_wrong_type(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nowhere.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")  # opening it would wait for a writer for ever
    with pytest.raises(ImageLoadError, match="fifo.jpg: not a regular file"):
        load_image(tmp_path / "fifo.jpg")
    with pytest.raises(ImageLoadError, match="got int"):
        load_image(42)
    with pytest.raises(ImageLoadError, match="uint8"):
        load_image(np.zeros((4, 4), dtype=np.float64))


def test_an_image_load_image_returned_is_not_loaded_again(tmp_path):
    Image.new("RGBA", (40, 30), (255, 0, 0, 128)).save(tmp_path / "half.png")
    loaded = load_image(tmp_path / "half.png")
    assert loaded.mode == "RGB" and load_image(loaded) is loaded  # upright RGB: returned as it is
    processor = OneNetImageProcessor()
    from_loaded = processor([loaded], return_tensors="np")["pixel_values"]
    assert np.array_equal(from_loaded, processor([str(tmp_path / "half.png")], return_tensors="np")["pixel_values"])


def test_the_vectorised_pass_equals_the_generic_one_and_yields_to_other_settings():
    from transformers.image_processing_backends import PilBackend

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((300, 200), (90, 410))]
    processor = OneNetImageProcessor()
    fast = processor(images, return_tensors="pt")["pixel_values"]
    generic = PilBackend.preprocess(processor, images, return_tensors="pt")["pixel_values"]
    assert fast.shape == generic.shape == (2, 3, 260, 260) and fast.dtype == generic.dtype
    assert float((fast - generic).abs().max()) <= 1e-6
    smaller = OneNetImageProcessor(size={"height": 224, "width": 224})
    assert smaller(images, return_tensors="pt")["pixel_values"].shape == (2, 3, 224, 224)
