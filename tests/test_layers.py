"""Explore, layer by layer: the backbone's stages of one image, their strongest channels, the grids drawn of them,
`onenet layers`, and one error per bad input. On the tiny model of conftest (its backbone is the real one)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageColor

from onenet_hf import OneNetError
from onenet_hf.cli import main
from onenet_hf.explore.sheets import HEAT_RAMP, heat_map, sheet_size
from tests.conftest import draw_shape

STAGES = ["stem", *(f"stage {n}" for n in range(1, 8)), "head"]
CHANNELS = [32, 16, 24, 48, 88, 120, 208, 352, 1280]  # EfficientNet-Lite2 at 260x260
SIDES = [130, 130, 65, 33, 17, 17, 9, 9, 9]


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("layers") / "red_circle.png"
    draw_shape("red", "circle", 3).save(path)
    return path


def test_stages_run_from_the_stem_to_the_grid_the_representation_pools(tiny_net, photo):
    model = tiny_net.model
    pixel_values = tiny_net.processor(images=[str(photo)])["pixel_values"]
    with torch.inference_mode():
        stages = model.get_stage_features(pixel_values)
        grid = model.get_backbone_features(pixel_values)
    assert list(stages) == STAGES
    assert [tuple(f.shape) for f in stages.values()] == [(1, c, s, s) for c, s in zip(CHANNELS, SIDES, strict=True)]
    assert torch.equal(stages["head"], grid)


def test_each_stage_shows_its_strongest_channels_by_mean_activation(tiny_net, photo):
    stages = tiny_net.layer_activations(str(photo), channels=20)
    with torch.inference_mode():
        features = tiny_net.model.get_stage_features(tiny_net.processor(images=[str(photo)])["pixel_values"])
    assert [s.name for s in stages] == STAGES and [s.number for s in stages] == list(range(9))
    assert [s.stage_channels for s in stages] == CHANNELS
    assert [s.resolution for s in stages] == [(side, side) for side in SIDES]
    assert len(stages[1].channels) == 16  # a stage with fewer channels than asked shows all of its own
    for stage, maps in zip(stages, features.values(), strict=True):
        means = maps[0].mean((1, 2)).numpy()
        assert list(stage.channels) == list(np.argsort(-means, kind="stable")[: len(stage.channels)])
        assert stage.means == pytest.approx(means[list(stage.channels)].tolist(), rel=1e-5)
        assert np.array_equal(stage.maps, maps[0, list(stage.channels)].numpy())
    assert [s.file_name for s in stages][::4] == ["00-stem.png", "04-stage-4.png", "08-head.png"]


def test_a_stage_grid_is_a_picture_of_the_expected_size(tiny_net, photo):
    stage = tiny_net.layer_activations(str(photo), channels=5)[3]
    picture = stage.to_image()
    assert picture.mode == "RGB" and picture.size == sheet_size(5, 3, 2, 2)  # 5 maps in 3 columns


def test_heat_maps_scale_each_map_to_its_own_range():
    picture = heat_map(np.array([[-3.0, 0.5], [1.0, 7.0]]), side=4)
    assert picture.size == (4, 4)
    low, high = (ImageColor.getrgb(colour) for colour in (HEAT_RAMP[0], HEAT_RAMP[-1]))
    assert picture.getpixel((0, 0)) == low and picture.getpixel((3, 3)) == high
    assert heat_map(np.full((3, 3), 2.5), side=3).getpixel((1, 1)) == low  # a flat map shows nothing


def test_cli_writes_one_png_per_stage_and_touches_nothing_else(tiny_net, photo, tmp_path, capsys):
    model_dir, out = tmp_path / "model", tmp_path / "stages"
    tiny_net.save_pretrained(model_dir)
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["layers", str(photo), "--model", str(model_dir), "--out", str(out), "--channels", "4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [f"{n:02d}-{name.replace(' ', '-')}.png" for n, name in enumerate(STAGES)]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "notes.txt"])
    assert (out / "notes.txt").read_text() == "mine"
    assert [line.split("\t")[0] for line in lines] == [str(out / name) for name in names]
    assert lines[0].split("\t")[1].startswith("stem: 32 channels at 130x130; strongest: ")
    for name in names:
        with Image.open(out / name) as picture:
            assert picture.format == "PNG" and picture.size == sheet_size(4, 2, 2, 2)
    assert main(["layers", str(photo), "--model", str(model_dir), "--out", str(tmp_path / "new" / "deeper")]) == 0
    assert len(list((tmp_path / "new" / "deeper").glob("*.png"))) == 9  # a missing folder is made


def test_one_error_each_for_bad_input(tiny_net, tmp_path, capsys):
    for channels in (0, 65, True, 2.0):
        with pytest.raises(OneNetError, match="channels must be an integer from 1 to 64, got"):
            tiny_net.layer_activations(draw_shape("red", "circle", 1), channels=channels)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(OneNetError, match="broken.jpg: not an image file"):
        tiny_net.layer_activations(tmp_path / "broken.jpg")
    (tmp_path / "taken").write_text("a file")
    assert main(["layers", "photo.png", "--out", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.strip().endswith("taken is a file, not a folder: give a folder to write into")
    assert main(["layers", "photo.png", "--out", str(tmp_path), "--channels", "65"]) == 2
    assert "channels must be an integer from 1 to 64, got 65" in capsys.readouterr().err
