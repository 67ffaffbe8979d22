"""Training under Accelerate with two local processes (gloo on CPU), as its users test it: `accelerate launch`."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from onenet_hf.errors import OneNetError
from onenet_hf.training.captions import CaptionTrainingArguments, train
from onenet_hf.training.heads import train_heads
from onenet_hf.training.scst import SCSTArguments, train_scst
from onenet_hf.utils.distributed import Processes
from onenet_hf.utils.extras import MissingExtraError

from .conftest import SMALL, shapes_head_arguments

TRAINING = {**SMALL, "epochs": 3, "dropout": 0.0}  # no dropout: its masks differ with the batch's shape
HEAD_EPOCHS = {"tag_epochs": 3, "retrieval_epochs": 3}


def cli_arguments(arguments: dict) -> list[str]:
    """`--name value` of each field (booleans as flags)."""
    out = []
    for name, value in arguments.items():
        flag = "--" + name.replace("_", "-")
        out += ([flag] if value else []) if isinstance(value, bool) else [flag, str(value)]
    return out


def launcher(processes: int = 2) -> list[str]:
    """`accelerate launch --multi_gpu --num_processes N` (torchrun underneath) on a free local port."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes)]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    with socket.socket() as probe:  # a free port for the processes' rendezvous
        probe.bind(("127.0.0.1", 0))
        return [*command, "--main_process_port", str(probe.getsockname()[1])]


def launch(command: str, arguments: dict, processes: int = 2, **popen) -> subprocess.Popen:
    """`accelerate launch ... -m onenet_hf.cli COMMAND ...`."""
    return subprocess.Popen(
        [*launcher(processes), "-m", "onenet_hf.cli", command, *cli_arguments(arguments)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen,
    )  # fmt: skip


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    return output


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def largest_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


def log(folder: Path, name: str = "training_log.json") -> list[dict]:
    return json.loads((folder / name).read_text())


@pytest.mark.distributed
def test_every_process_leaves_its_process_group_before_the_interpreter_finalises(tmp_path):
    """A gloo group left to the interpreter's finalisation can abort a process at exit (SIGABRT, "terminate called
    without an active exception"), as one CI run of two-process train-heads did after its work was done."""
    script = tmp_path / "processes.py"
    script.write_text(
        "import atexit, os\n"
        "import torch.distributed as dist\n"
        "from onenet_hf.utils.distributed import Processes\n"
        "say = lambda line: os.write(1, f'{line}\\n'.encode())\n"  # one write: the two processes share the pipe
        "atexit.register(lambda: say(f'group left at exit: {not dist.is_initialized()}'))\n"
        "processes = Processes(cpu=True)\n"  # its own exit handler runs before the one above (last in, first out)
        "say(f'group joined: {dist.is_initialized()} {processes.count}')\n"
    )
    process = subprocess.Popen([*launcher(), str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = finish(process)
    assert output.count("group joined: True 2") == 2
    assert output.count("group left at exit: True") == 2


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_train_as_one_process_does_at_the_same_global_batch(shapes_dir, tmp_path):
    """Captions, then heads: one process and two (each half of every batch) end with the same loss curve, dev
    figures and weights, up to the order of float sums; the feature cache made by two processes is merged."""
    caption = {"data_dir": str(shapes_dir), **TRAINING}
    alone = train(CaptionTrainingArguments(output_dir=str(tmp_path / "one"), cache_dir=str(tmp_path / "c1"), **caption))
    both = tmp_path / "two"
    output = finish(launch("train", {**caption, "output_dir": both, "cache_dir": tmp_path / "c2"}))
    assert output.count("best model written to") == 1  # the main process prints, the other one does not

    for one, two in zip(log(alone), log(both), strict=True):
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)
        assert (two["BLEU-4"], two["CIDEr"]) == pytest.approx((one["BLEU-4"], one["CIDEr"]), rel=1e-6)
    assert largest_difference(weights(alone), weights(both)) < 1e-4
    # the two processes' shares of the feature cache were merged into the cache one process makes, then removed
    assert sorted(p.name for p in (tmp_path / "c2").iterdir()) == sorted(p.name for p in (tmp_path / "c1").iterdir())
    for folder in (tmp_path / "c1").iterdir():
        merged = np.load(tmp_path / "c2" / folder.name / "features.npy").astype(np.float32)
        np.testing.assert_allclose(merged, np.load(folder / "features.npy").astype(np.float32), atol=2e-2)

    model = tmp_path / "no-dropout"  # the heads' projection dropout off: masks differ with the batch's shape
    shutil.copytree(alone, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "projection_dropout": 0.0}))
    heads = shapes_head_arguments(model, shapes_dir, tmp_path / "heads-one", str(tmp_path / "c1"))
    heads = replace(heads, **HEAD_EPOCHS)
    heads_alone = train_heads(heads)
    heads_both = tmp_path / "heads-two"
    output = finish(launch("train-heads", {**asdict(heads), "output_dir": heads_both, "cache_dir": tmp_path / "c2"}))
    assert output.count("model with trained heads written to") == 1
    rows = zip(log(heads_alone, "heads_training_log.json"), log(heads_both, "heads_training_log.json"), strict=True)
    for one, two in rows:
        assert two.pop("head") == one.pop("head")
        assert two == pytest.approx(one, rel=1e-6)
    assert largest_difference(weights(heads_alone), weights(heads_both)) < 1e-3


@pytest.mark.distributed
@pytest.mark.slow
def test_a_killed_two_process_run_resumes_and_ends_as_an_uninterrupted_one(shapes_dir, tmp_path):
    caption = {"data_dir": str(shapes_dir), "cache_dir": tmp_path / "cache", **SMALL, "epochs": 6}
    finish(launch("train", {**caption, "output_dir": tmp_path / "whole"}))

    killed = tmp_path / "killed"
    psutil = pytest.importorskip("psutil")  # comes with accelerate
    run = launch("train", {**caption, "output_dir": killed})
    deadline = time.monotonic() + 240
    while not ((killed / "training_log.json").exists() and len(log(killed)) >= 2):
        assert run.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    tree = [run.pid, *(child.pid for child in psutil.Process(run.pid).children(recursive=True))]
    for pid in tree:  # the launcher, torchrun's agent and both training processes (in sessions of their own)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.communicate()
    finished = torch.load(killed / "training_state.pt", weights_only=False)["epoch"] + 1  # the last epoch saved
    assert finished < 6, "the run had finished every epoch when it was killed: nothing to resume"

    output = finish(launch("train", {**caption, "output_dir": killed}))
    assert f"resuming after epoch {finished}" in output
    assert [row["epoch"] for row in log(killed)] == list(range(1, 7))
    assert log(killed) == log(tmp_path / "whole")  # seeds make two-process runs reproducible, resumed or not
    whole, resumed = weights(tmp_path / "whole"), weights(killed)
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)


def test_a_global_batch_is_cut_into_equal_shares():
    processes = Processes()
    assert torch.equal(processes.share(torch.arange(7)), torch.arange(7))  # alone: the whole batch
    processes.count = 2
    shares = []
    for processes.index in (0, 1):
        shares.append(processes.share(torch.arange(7)))
    assert [s.tolist() for s in shares] == [[0, 1, 2], [3, 4, 5]]  # cut to a multiple of 2, then halved
    assert processes.share(torch.arange(1)).numel() == 0  # smaller than the count: every share empty


def test_a_batch_must_split_into_equal_shares():
    processes = Processes()
    processes.check_batch_size(7, "--batch-size")  # alone: any size
    processes.count = 2
    with pytest.raises(OneNetError, match="--batch-size 7 must be a multiple of the number of processes"):
        processes.check_batch_size(7, "--batch-size")


def test_several_processes_need_the_distributed_extra(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setitem(sys.modules, "accelerate", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'onenet_hf\[distributed\]'"):
        Processes()


def test_scst_refuses_to_run_as_several_processes(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    arguments = SCSTArguments(model_dir=str(tmp_path), data_dir=str(tmp_path), output_dir=str(tmp_path / "out"))
    with pytest.raises(OneNetError, match="train-scst runs as one process"):
        train_scst(arguments)
    assert not (tmp_path / "out").exists()


class OneOfTwo(Processes):
    """This process alone, seen as one of two whose partner's outcome is simulated: added to every sum."""

    def __init__(self, partner_failed: bool) -> None:
        super().__init__()
        self.count, self.partner, self.sums = 2, float(partner_failed), []

    def sum(self, values: list[float]) -> list[float]:
        self.sums.append(values)
        return [value + self.partner for value in values]


class Broken(Exception):
    pass


def test_an_error_on_one_process_is_an_error_on_every_process():
    with OneOfTwo(partner_failed=False).shared_outcome("merging"):
        pass  # both worked: no error
    with pytest.raises(OneNetError, match="merging failed in 1 of 2 processes"):
        with OneOfTwo(partner_failed=True).shared_outcome("merging"):
            pass  # here it worked, the partner's did not
    failing = OneOfTwo(partner_failed=False)
    with pytest.raises(Broken, match="unreadable image"):  # the failing process raises its own error
        with failing.shared_outcome("merging"):
            raise Broken("unreadable image")
    assert failing.sums == [[1.0]]  # after telling the others it failed


def test_main_first_runs_the_main_process_then_the_others_and_shares_each_outcome():
    ran = []
    other = OneOfTwo(partner_failed=True)  # the partner is the main process, and its turn failed
    other.index, other.is_main = 1, False
    with pytest.raises(OneNetError, match=r"filling the cache \(in the main process\) failed in 1 of 2"):
        with other.main_first("filling the cache"):
            ran.append("other")
    main = OneOfTwo(partner_failed=False)  # this is the main process: its turn, then the others'
    with main.main_first("filling the cache"):
        ran.append("main")
    assert ran == ["main"] and main.sums == [[0.0], [0.0]]
    failing = OneOfTwo(partner_failed=False)
    with pytest.raises(Broken, match="disk full"):  # the main process raises its own error, after one reduction
        with failing.main_first("filling the cache"):
            raise Broken("disk full")
    assert failing.sums == [[1.0]]


def test_several_processes_refuse_a_device_of_their_own(monkeypatch, tmp_path):
    """Accelerate gives each process its device: a --device would put every process on the same one."""

    class Launched(OneOfTwo):
        device = torch.device("cpu")

    monkeypatch.setattr("onenet_hf.training.captions.Processes", lambda: Launched(partner_failed=False))
    arguments = CaptionTrainingArguments(data_dir=str(tmp_path), output_dir=str(tmp_path / "out"), device="cpu")
    with pytest.raises(OneNetError, match="--device cpu cannot be used with several processes"):
        train(arguments)
    assert not (tmp_path / "out").exists()
