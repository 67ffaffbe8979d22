"""Concurrent requests answered in batches: one model pass serves every request waiting at that moment.

A server's request threads each call a `RequestBatcher` with one item and block until their own answer. One
worker thread takes every waiting item (up to `max_batch_size`), runs the batched function once, and hands each
caller its result. On a CPU this shares the decoder's weight reads between visitors; a visitor alone is answered
at once (nothing waits for a batch to fill).

Gradio's own `batch=True` events were the first choice, but in gradio 6.31 an error raised by a batched function
reaches every visitor of the batch, and event validators fail every call of a batched event: here an item that
fails is run again alone, so its error reaches only the request that sent it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from ..errors import OneNetError

Item = TypeVar("Item")
Result = TypeVar("Result")
MAX_BATCH_SIZE = 64  # a batch's memory grows with it (tagging: 100 sampled captions per image)


class RequestBatcher(Generic[Item, Result]):
    """Calls from many threads joined into calls of `run_batch` (a list of items -> their results, in order)."""

    def __init__(self, run_batch: Callable[[list[Item]], list[Result]], max_batch_size: int, name: str = "batcher"):
        if not isinstance(max_batch_size, int) or not 1 <= max_batch_size <= MAX_BATCH_SIZE:
            raise OneNetError(f"max_batch_size must be 1 to {MAX_BATCH_SIZE}, got {max_batch_size!r}")
        self.run_batch, self.max_batch_size, self.name = run_batch, max_batch_size, name
        self._waiting: queue.SimpleQueue[tuple[Item, Future[Result]]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, item: Item) -> Result:
        """This item's result, computed in a batch with whatever else is waiting; its own error if it fails."""
        answer: Future[Result] = Future()
        self._waiting.put((item, answer))
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._worker.start()
        return answer.result()

    def _serve(self) -> None:
        while True:
            batch = [self._waiting.get()]
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            try:
                self._answer(batch)
            except BaseException as error:  # e.g. SystemExit from the batch: its callers must not wait forever
                with self._lock:
                    self._worker = None  # before any caller wakes: the next call starts a new worker
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(error)
                raise  # this worker ends; the next call starts another

    def _answer(self, batch: list[tuple[Item, Future[Result]]]) -> None:
        try:
            results = self.run_batch([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(batch)} items gave {len(results)} results")
        except Exception as error:  # whichever item caused it, only its own request may see it
            if len(batch) == 1:
                batch[0][1].set_exception(error)
            else:
                for pair in batch:
                    self._answer([pair])
            return
        for (_, answer), result in zip(batch, results, strict=True):
            answer.set_result(result)


__all__ = ["MAX_BATCH_SIZE", "RequestBatcher"]
