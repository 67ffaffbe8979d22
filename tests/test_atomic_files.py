"""onenet_hf.utils.atomic_files: results, logs and folders are replaced whole or not at all; a killed run's
leftovers go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from onenet_hf.errors import OneNetError
from onenet_hf.utils.atomic_files import (
    check_output_file,
    check_output_folder,
    new_folder,
    temporary_folder,
    write_json,
)


def test_write_json_makes_the_folder_and_writes_numpy_numbers_as_numbers(tmp_path):
    path = tmp_path / "results" / "run" / "figures.json"
    write_json({"recall": np.float32(0.5), "images": np.int64(3), "rows": [1, 2]}, path)
    assert json.loads(path.read_text()) == {"recall": 0.5, "images": 3, "rows": [1, 2]}
    assert path.read_text().endswith("}\n")
    assert [p.name for p in path.parent.iterdir()] == ["figures.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "figures.json"
    write_json({"run": 1}, path)
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        write_json({"run": 2, "model": object()}, path)
    assert json.loads(path.read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]


def test_a_write_interrupted_before_the_rename_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "figures.json"
    write_json({"run": 1}, path)

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr("onenet_hf.utils.atomic_files.os.replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json({"run": 2}, path)
    assert json.loads(path.read_text()) == {"run": 1}


KILLED_IN_NEW_FOLDER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from onenet_hf.utils.atomic_files import new_folder
    with new_folder(Path(sys.argv[1]), "a release") as building:
        (building / "model.safetensors").write_bytes(b"half of it")
        os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_killed_runs_temporary_folder_is_removed_by_the_next_run_beside_it(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run([sys.executable, "-c", KILLED_IN_NEW_FOLDER, str(out)], timeout=120)
    assert result.returncode == -signal.SIGKILL
    (leftover,) = tmp_path.iterdir()
    assert leftover.name.startswith(".release.") and (leftover / "model.safetensors").is_file()
    (tmp_path / ".release.notmine").mkdir()  # not a name mkdtemp gives: never touched
    with new_folder(out, "a release") as building:
        (building / "README.md").write_text("card")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".release.notmine", "release"]
    assert [p.name for p in out.iterdir()] == ["README.md"]


@pytest.mark.skipif(os.name != "posix", reason="leftovers are told from running folders by flock")
def test_a_running_builds_temporary_folder_is_left_alone(tmp_path):
    with temporary_folder(tmp_path, ".release.") as running:
        (running / "weights").write_bytes(b"being written")
        with new_folder(tmp_path / "release", "a release") as building:
            (building / "README.md").write_text("card")
        assert (running / "weights").read_bytes() == b"being written"
    assert not running.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["release"]


def test_a_failed_build_leaves_no_temporary_folder(tmp_path):
    with pytest.raises(RuntimeError), new_folder(tmp_path / "release", "a release") as building:
        (building / "README.md").write_text("card")
        raise RuntimeError("the model did not load")
    assert list(tmp_path.iterdir()) == []


def test_an_output_file_is_a_new_or_regular_file_in_a_folder_that_can_be_written(tmp_path):
    folder, fifo = tmp_path / "a-folder", tmp_path / "a-fifo"
    folder.mkdir()
    os.mkfifo(fifo)
    for path, problem in (
        (folder, "is a folder"),
        (fifo, "is not a regular file"),
        (tmp_path / "missing" / "x.png", "its folder does not exist"),
    ):
        with pytest.raises(OneNetError, match=problem):
            check_output_file(path)
    if Path("/proc/self").is_dir():  # a folder whose permission bits allow writing, where nothing can be created
        with pytest.raises(OneNetError, match="cannot write in /proc"):
            check_output_file("/proc/x.png")
    assert check_output_file(tmp_path / "new.png") == (tmp_path / "new.png").resolve()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-fifo", "a-folder"]  # the probe left nothing


def test_an_output_file_that_is_a_link_is_written_through_to_its_target(tmp_path):
    target, link = tmp_path / "target.png", tmp_path / "link.png"
    link.symlink_to(target)
    assert check_output_file(link) == target.resolve()


def test_an_output_folder_is_refused_where_it_cannot_be_made(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OneNetError, match="is a file, not a folder"):
        check_output_folder(tmp_path / "a-file")
    with pytest.raises(OneNetError, match="a-file is a file, not a folder"):
        check_output_folder(tmp_path / "a-file" / "inside")
    if Path("/proc/self").is_dir():
        with pytest.raises(OneNetError, match="cannot write in /proc"):
            check_output_folder("/proc/new-folder/deeper")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not made


def test_write_json_writes_through_a_link_and_keeps_it(tmp_path):
    target, link = tmp_path / "results.json", tmp_path / "link.json"
    link.symlink_to(target)
    write_json({"a": 1}, link)
    assert link.is_symlink() and json.loads(target.read_text()) == {"a": 1}


def test_an_output_folder_that_is_a_link_is_made_and_written_where_it_leads(tmp_path):
    dangling, to_folder = tmp_path / "dangling", tmp_path / "to-folder"
    dangling.symlink_to(tmp_path / "made-later")
    (tmp_path / "folder").mkdir()
    to_folder.symlink_to(tmp_path / "folder")
    assert check_output_folder(dangling) == (tmp_path / "made-later").resolve()
    assert check_output_folder(to_folder) == (tmp_path / "folder").resolve()
    with new_folder(dangling, "a test") as building:
        (building / "file.txt").write_text("x")
    assert dangling.is_symlink() and (dangling / "file.txt").read_text() == "x"


def test_an_output_that_is_a_loop_of_links_is_one_error(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for check in (check_output_file, check_output_folder):
        with pytest.raises(OneNetError, match="is a loop of links"):
            check(tmp_path / "a")
    with pytest.raises(OneNetError, match="is a loop of links"):
        write_json({}, tmp_path / "a")
