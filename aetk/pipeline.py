"""One overlapped read -> compute -> write pipeline: reads run ahead of the caller in reader
threads, writes run behind it in writer threads, and the caller computes in between (ONNX
Runtime releases the GIL, so the model never waits on the disk). Used by ``aetk compress``
(read batches, encode, write shards), ``aetk decompress`` (decode, write files) and
``aetk denoise`` (read images, denoise, write images).

    with Pipeline(readers=1, writers=1, ahead=2, behind=2, name="aetk-compress") as pipe:
        for item, read in pipe.read(items, load):     # load(item) in a reader, results in order
            y = compute(read.result())
            pipe.write(save, item, y)                  # save(item, y) in a writer, behind

- **Bounded.** At most ``ahead`` reads are in flight beyond the one the caller holds, and at
  most ``behind`` writes wait behind it: memory stays flat whatever the number of items.
- **Order.** Reads come back in the order of ``items``; with one writer, writes run in the
  order they were queued.
- **Errors.** A write without ``done`` is fatal: once it fails, no further read is started,
  queued writes are skipped, and the caller gets its exception at its next ``read`` step,
  ``write`` or the end of the block. A write with ``done`` is the caller's to judge:
  ``done(future)`` is called in the caller's thread, in queue order, once it has run. A read's
  exception is raised by ``read.result()`` in the caller. When the block raises, queued work is
  skipped and the threads are joined before the exception leaves it, so no write runs while
  the caller discards its files. Standard library only (and aetk's error root).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterable, Iterator, TypeVar

from aetk.errors import AetkError

T = TypeVar("T")
R = TypeVar("R")


class PipelineStopped(AetkError):
    """Queued work that did not run because the pipeline stopped (a failure upstream)."""


class _Workers:
    """``count`` threads running queued calls in order (a minimal pool whose threads carry
    stable names: ``name`` alone for one thread, ``name-i`` for several)."""

    def __init__(self, count: int, name: str, skip: Callable[[], bool]):
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._skip = skip
        self._names = [name] if count == 1 else [f"{name}-{i}" for i in range(count)]
        self.threads: list[threading.Thread] = []  # started with the first task

    def submit(self, fn: Callable[..., R], *args: Any) -> Future:
        if not self.threads:
            self.threads = [threading.Thread(target=self._run, name=n, daemon=True) for n in self._names]
            for t in self.threads:
                t.start()
        fut: Future = Future()
        self._q.put((fut, fn, args))
        return fut

    def _run(self) -> None:
        while (task := self._q.get()) is not None:
            fut, fn, args = task
            if not fut.set_running_or_notify_cancel():
                continue
            if self._skip():
                fut.set_exception(PipelineStopped("skipped: the pipeline stopped"))
                continue
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:  # handed to whoever reads the future
                fut.set_exception(exc)

    def join(self) -> None:
        for _ in self.threads:
            self._q.put(None)
        for t in self.threads:
            t.join()


class Pipeline:
    """Read-ahead and write-behind threads around the caller's compute (see the module doc)."""

    def __init__(self, *, readers: int = 1, writers: int = 1, ahead: int = 2, behind: int = 2,
                 name: str = "aetk"):
        self.ahead, self.behind = max(1, int(ahead)), max(0, int(behind))
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._writes: deque[tuple[Future, Callable[[Future], None] | None]] = deque()
        stopped = lambda: self._failure is not None  # noqa: E731
        self._readers = _Workers(max(1, int(readers)), f"{name}-reader", stopped)
        self._writers = _Workers(max(1, int(writers)), f"{name}-writer", stopped)

    # -- the caller's side --------------------------------------------------------------------
    def read(self, items: Iterable[T], fn: Callable[[T], R]) -> Iterator[tuple[T, Future]]:
        """``(item, future of fn(item))`` in the order of ``items``, ``ahead`` reads in flight."""
        pending: deque[tuple[T, Future]] = deque()
        todo = iter(items)

        def refill() -> None:
            while len(pending) < self.ahead and self._failure is None:
                for item in todo:
                    pending.append((item, self._readers.submit(fn, item)))
                    break
                else:
                    return

        refill()
        while pending:
            self.check()
            item, fut = pending.popleft()
            refill()
            yield item, fut
        self.check()

    def write(self, fn: Callable[..., Any], *args: Any, done: Callable[[Future], None] | None = None) -> None:
        """Queue ``fn(*args)`` for a writer; then wait for the oldest writes while more than
        ``behind`` are queued (calling their ``done``, or raising a fatal write's failure)."""
        self.check()
        fut = self._writers.submit(fn, *args) if done is not None else self._writers.submit(self._fatal, fn, *args)
        self._writes.append((fut, done))
        self._settle(self.behind)

    def finish(self) -> None:
        """Wait for every queued write; raise the first fatal failure."""
        self._settle(0)
        self.check()

    def check(self) -> None:
        """Raise the failure that stopped the pipeline, if any."""
        if self._failure is not None:
            raise self._failure

    # -- inside ---------------------------------------------------------------------------------
    def _fatal(self, fn: Callable[..., R], *args: Any) -> R:
        try:
            return fn(*args)
        except BaseException as exc:
            self._stop(exc)
            raise

    def _stop(self, exc: BaseException) -> None:
        with self._lock:
            if self._failure is None:
                self._failure = exc

    def _settle(self, limit: int) -> None:
        while len(self._writes) > limit:
            fut, done = self._writes.popleft()
            fut.exception()  # waits for it
            if done is not None:
                done(fut)
            elif fut.exception() is not None:
                self.check()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is None:
                self.finish()
        except BaseException as failure:
            self._stop(failure)
            raise
        finally:
            if exc is not None:
                self._stop(exc)  # queued reads and writes are skipped from here on
            self._readers.join()
            self._writers.join()


__all__ = ["Pipeline", "PipelineStopped"]
