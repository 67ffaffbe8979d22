"""RequestBatcher: concurrent calls answered in shared batches, each caller its own answer or its own error."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from onenet_hf.errors import OneNetError
from onenet_hf.space.batching import MAX_BATCH_SIZE, RequestBatcher


class Recorder:
    """A batched function that squares numbers, refuses negative ones, and records every batch it was given;
    the first batch waits until `release` is set, so the calls made meanwhile queue up behind it."""

    def __init__(self):
        self.batches: list[list[int]] = []
        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        if not self.started.is_set():
            self.started.set()
            self.release.wait(10)
        self.batches.append(list(items))
        if any(item < 0 for item in items):
            raise ValueError(f"negative: {min(items)}")
        return [item * item for item in items]


def call_together(batcher: RequestBatcher, recorder: Recorder, items: list[int]) -> list:
    """Each item from its own thread, started while the first batch is held; results or exceptions, in order."""

    def one(item):
        try:
            return batcher(item)
        except Exception as error:
            return error

    with ThreadPoolExecutor(len(items) + 1) as pool:
        first = pool.submit(one, 1000)
        assert recorder.started.wait(10)  # the worker holds the first batch
        futures = [pool.submit(one, item) for item in items]
        while batcher._waiting.qsize() < len(items):
            time.sleep(0.01)
        recorder.release.set()
        first.result()
        return [future.result() for future in futures]


def test_waiting_calls_share_a_batch_and_each_gets_its_own_answer():
    recorder = Recorder()
    batcher = RequestBatcher(recorder, max_batch_size=4)
    assert call_together(batcher, recorder, list(range(10))) == [n * n for n in range(10)]
    assert recorder.batches[0] == [1000]  # the held batch
    sizes = [len(batch) for batch in recorder.batches[1:]]
    assert sum(sizes) == 10 and max(sizes) == 4  # batched, never above the cap
    assert sorted(n for batch in recorder.batches[1:] for n in batch) == list(range(10))


def test_an_error_reaches_only_the_request_that_caused_it():
    recorder = Recorder()
    batcher = RequestBatcher(recorder, max_batch_size=8)
    results = call_together(batcher, recorder, [2, -3, 4])
    assert results[0] == 4 and results[2] == 16
    assert isinstance(results[1], ValueError) and str(results[1]) == "negative: -3"
    assert [-3] in recorder.batches  # the failed batch was re-run item by item
    assert batcher(5) == 25  # and the worker keeps serving


def test_a_batch_that_loses_answers_is_an_error_not_a_wrong_answer():
    recorder = Recorder()
    batcher = RequestBatcher(lambda items: recorder(items)[:-1], max_batch_size=4)
    results = call_together(batcher, recorder, [2, 3])
    assert recorder.batches[1:] == [[2, 3], [2], [3]]  # the batch of two, then each alone
    assert all(isinstance(r, RuntimeError) and "1 items gave 0 results" in str(r) for r in results)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the killed worker's
def test_a_worker_killed_by_its_batch_fails_its_callers_and_the_next_call_gets_a_new_one():
    def run(items):
        if 0 in items:
            raise SystemExit("stop")
        return items

    batcher = RequestBatcher(run, max_batch_size=2)
    assert batcher(1) == 1
    worker = batcher._worker
    with pytest.raises(SystemExit):
        batcher(0)
    worker.join(10)  # it ends with the SystemExit, inside this test
    assert not worker.is_alive() and batcher(7) == 7


@pytest.mark.parametrize("size", [0, MAX_BATCH_SIZE + 1, 2.5])
def test_the_batch_size_is_capped(size):
    with pytest.raises(OneNetError, match=f"max_batch_size must be 1 to {MAX_BATCH_SIZE}"):
        RequestBatcher(lambda items: items, max_batch_size=size)
