"""`onenet index --engine ray`: Ray Data actors embed, this process writes the index; a local Ray of two CPUs."""

from __future__ import annotations

import logging
import sqlite3
import sys

import numpy as np
import pytest

from onenet_hf import OneNet
from onenet_hf.cli import main
from onenet_hf.errors import OneNetError
from onenet_hf.gallery.index import GalleryIndex
from onenet_hf.ray_indexing import MAX_WORKERS, RayEmbedder
from onenet_hf.representations import ARRAYS
from onenet_hf.utils.extras import MissingExtraError

from .conftest import COLOURS, SHAPES, draw_shape


def catalogue(folder) -> list[tuple]:
    """Every image row but its shard (shard names are random): path, hash, size, mtime, position."""
    with sqlite3.connect(folder / "index.sqlite") as connection:
        return sorted(connection.execute("SELECT path, hash, size, mtime_ns, position FROM images"))


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.mark.distributed
@pytest.mark.slow
def test_a_ray_build_gives_the_index_a_single_process_build_gives(local_ray, shapes_model_with_heads, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for k in range(96):
        draw_shape(list(COLOURS)[k % len(COLOURS)], SHAPES[k % len(SHAPES)], 1000 + k).save(images / f"{k:03d}.png")
    (images / "broken.jpg").write_bytes(b"not an image")
    net = OneNet.from_pretrained(shapes_model_with_heads)
    local = net.build_index(images, tmp_path / "local", batch_size=16)
    ray_build = ["index", str(images), "--out", str(tmp_path / "ray"), "--engine", "ray", "--num-workers", "2"]
    assert main([*ray_build, "--model", str(shapes_model_with_heads)]) == 0  # joins the Ray the fixture started
    distributed = GalleryIndex.load(tmp_path / "ray")

    assert len(distributed) == len(local) == 96
    assert catalogue(tmp_path / "ray") == catalogue(tmp_path / "local")
    assert distributed.metadata["skipped"] == local.metadata["skipped"]
    assert [entry["path"] for entry in distributed.metadata["skipped"]] == [str(images / "broken.jpg")]
    assert distributed.paths == local.paths
    for name in ARRAYS:
        np.testing.assert_allclose(
            np.asarray(getattr(distributed, name), dtype=np.float32),
            np.asarray(getattr(local, name), dtype=np.float32),
            rtol=1e-3, atol=1e-4,
        )  # fmt: skip
    assert distributed.nearest(distributed.image_embeds[5], 1)[0][0][0] == 5


def test_ray_needs_the_distributed_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'onenet_hf\[distributed\]'"):
        RayEmbedder("any-model")


@pytest.mark.parametrize("workers", [0, MAX_WORKERS + 1, 2.5])
def test_the_number_of_ray_workers_is_capped(workers):
    with pytest.raises(OneNetError, match="--num-workers must be 1 to"):
        RayEmbedder("any-model", num_workers=workers)


def test_ray_options_need_the_ray_engine(shapes_dir, tmp_path, capsys):
    out = str(tmp_path / "index")
    assert main(["index", str(shapes_dir / "images"), "--out", out, "--num-workers", "4"]) == 2
    assert "--address and --num-workers apply to --engine ray" in capsys.readouterr().err
    assert main(["index", str(shapes_dir / "images"), "--out", out, "--engine", "ray", "--num-workers", "0"]) == 2
    assert "--num-workers must be 1 to" in capsys.readouterr().err
    assert not (tmp_path / "index").exists()  # refused before anything was written
