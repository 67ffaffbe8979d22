"""Training on several processes with Hugging Face Accelerate: `accelerate launch --num_processes N onenet train`.

Accelerate does the distributed part: it starts the processes (one per GPU, or N on a CPU; several nodes by its
own configuration), wraps the trained module in DistributedDataParallel (gradients averaged by gloo or NCCL)
and provides barriers and reductions. What training adds: every process draws the same global batch and takes
its slice of it (`Processes.share`), so N processes at `--batch-size B` (a multiple of N) train as one process
at B does, up to the order of float sums; only the main process evaluates the caption network on dev and writes
checkpoints, logs and the merged feature cache (each process extracts its share of it). Every process must see
the same data, `--output-dir` and `--cache-dir` (on several machines: a filesystem they share). A plain
`onenet train` (no launcher, or one process) never imports accelerate and runs exactly as before.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import torch

from ..errors import OneNetError
from .extras import require

BARRIER_TIMEOUT = 4 * 3600  # seconds a process waits for the others (dev evaluation, merging a large cache)


def launched_processes() -> int:
    """How many processes this run has: WORLD_SIZE, which `accelerate launch` (and torchrun under it) sets."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this is the main process of its run (RANK 0, or no launcher): the one that prints results."""
    return int(os.environ.get("RANK", "0")) == 0


class Processes:
    """This process's place in a run: alone, or one of `count` started by `accelerate launch`."""

    def __init__(self, cpu: bool = False) -> None:
        """`cpu`: train on the CPU even where Accelerate would give this process a GPU."""
        self.accelerator = None
        if launched_processes() > 1:
            accelerate = require("accelerate", "distributed", "training on several processes (accelerate launch)")
            # the caption loss leaves the tag and retrieval heads unused: DDP must not wait for their gradients
            ddp = accelerate.DistributedDataParallelKwargs(find_unused_parameters=True)
            # the others wait at a barrier while the main process evaluates on dev or merges the feature cache
            group = accelerate.InitProcessGroupKwargs(timeout=timedelta(seconds=BARRIER_TIMEOUT))
            # without an accelerator device, Accelerate's multi-process launcher needs `cpu` to pick gloo
            cpu = cpu or not torch.accelerator.is_available()
            # fp32 and eager, whatever `accelerate config` saved: training here has no loss scaling or compiling
            self.accelerator = accelerate.Accelerator(
                cpu=cpu, mixed_precision="no", dynamo_backend="no", kwargs_handlers=[ddp, group]
            )
            # the group is left at exit while the interpreter is whole: a gloo group left to its finalisation can
            # abort the process ("terminate called without an active exception", pytorch/pytorch#190489)
            atexit.register(self.accelerator.end_training)
            kind = self.accelerator.distributed_type.name
            if kind not in ("MULTI_GPU", "MULTI_CPU"):
                raise OneNetError(f"training runs data-parallel (DDP) on GPUs or CPUs; Accelerate chose {kind}")
        self.count = self.accelerator.num_processes if self.accelerator else 1
        self.index = self.accelerator.process_index if self.accelerator else 0
        self.is_main = self.index == 0

    @property
    def device(self) -> torch.device | None:
        """The device Accelerate gave this process (its GPU, or the CPU); None when alone (the caller chooses)."""
        return self.accelerator.device if self.accelerator else None

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` in DistributedDataParallel when there are several processes; itself otherwise. Call the
        wrapper for the loss (its forward is what makes DDP average the gradients)."""
        return self.accelerator.prepare_model(module) if self.accelerator else module

    def check_batch_size(self, size: int, option: str) -> None:
        """Refuse a global batch that does not split into equal shares (their captions would be dropped)."""
        if size % self.count:
            raise OneNetError(f"{option} {size} must be a multiple of the number of processes ({self.count})")

    def agree(self, fact: bool, problem: str) -> bool:
        """`fact` (the same in every process), or a clear error when the processes see it differently, as when
        one node cannot see a file the others see: `problem` says what must be shared."""
        seen = self.sum([float(fact)])[0]
        if seen not in (0, self.count):
            raise OneNetError(f"{problem}: {int(seen)} of {self.count} processes see it")
        return fact

    @contextmanager
    def shared_outcome(self, what: str) -> Iterator[None]:
        """Run the block on every process, then share how it went: an error raised in the block on one process
        reaches the others as an error too (naming `what`), instead of leaving them at the next barrier until its
        timeout; the failing process raises its own. Every process reduces once, so this is a barrier too."""
        try:
            yield
        except BaseException:  # KeyboardInterrupt too: the others must not wait for this process's reduction
            self.sum([1.0])
            raise
        failed = int(self.sum([0.0])[0])
        if failed:
            raise OneNetError(f"{what} failed in {failed} of {self.count} processes (their own errors say why)")

    def share(self, batch: torch.Tensor) -> torch.Tensor:
        """This process's contiguous slice of a global batch (all of it when alone). The batch is first cut to a
        multiple of the process count, so every share is as large (the average of the processes' mean losses is
        then the batch's mean loss); a batch smaller than the count gives every process an empty share."""
        if self.count == 1:
            return batch
        return batch[: len(batch) - len(batch) % self.count].tensor_split(self.count)[self.index]

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor` (equal shapes), concatenated in process order, gradients flowing back to each
        process's own part (torch.distributed's autograd all_gather): a contrastive loss over the global batch."""
        if self.count == 1:
            return tensor
        from torch.distributed.nn.functional import all_gather

        return torch.cat(all_gather(tensor))

    def sum(self, values: list[float]) -> list[float]:
        """Each of `values` summed over the processes (one reduction for all of them)."""
        if self.count == 1:
            return values
        summed = self.accelerator.reduce(torch.tensor(values, dtype=torch.float64, device=self.device), "sum")
        return summed.tolist()

    @contextmanager
    def main_first(self, what: str) -> Iterator[None]:
        """The main process runs the block first (filling a cache), then the others (reading it). If it fails on
        the main process, the others raise an error naming `what` instead of running it; if it then fails on
        another, every process raises (`shared_outcome`). Two reductions each."""
        if self.count == 1:
            yield
            return
        if self.is_main:
            with self.shared_outcome(what):
                yield
            with self.shared_outcome(what):
                pass  # the others' turn
        else:
            with self.shared_outcome(f"{what} (in the main process)"):
                pass  # the main process's turn
            with self.shared_outcome(what):
                yield


__all__ = ["Processes", "is_main_process", "launched_processes"]
