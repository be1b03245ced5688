"""Dynamic batching, as Triton configures it: one queue per model; the oldest request waits at
most ``max_queue_delay`` for others with the same per-row shapes to join it, up to
``max_batch`` rows; a batch that reaches a preferred size runs at once. Batches run on the
model's own executor thread, so the event loop never waits for ONNX Runtime.

Requests are validated before they join (``ModelQueue.submit`` takes checked feeds), so a
bad request never spoils a batch. A request larger than ``max_batch`` runs alone (the runtime
splits it into ``max_batch``-row calls). A full queue refuses at once (``QueueFull``).
"""

from __future__ import annotations

import asyncio
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import numpy as np

from aetk.errors import AetkError
from aetk.options import flag

from .options import ServeOptions

Feeds = dict[str, np.ndarray]


class QueueFull(AetkError):
    """The model's queue holds ``max_queue`` requests already."""


class _Item:
    __slots__ = ("feeds", "rows", "key", "future", "t0")

    def __init__(self, feeds: Feeds, future: asyncio.Future) -> None:
        self.feeds, self.future, self.t0 = feeds, future, time.monotonic()
        first = next(iter(feeds.values()))
        self.rows = int(first.shape[0])
        self.key = tuple((k, v.shape[1:], v.dtype.str) for k, v in feeds.items())


class ModelQueue:
    def __init__(self, name: str, run: Callable[[Feeds], Feeds], *, max_batch: int, max_delay_s: float,
                 preferred: tuple[int, ...] = (), max_queue: int = 256, metrics=None) -> None:
        self.name, self._run = name, run
        self.max_batch, self.max_delay_s, self.max_queue = max_batch, max_delay_s, max_queue
        self.preferred = tuple(sorted(p for p in preferred if p <= max_batch))
        self.metrics = metrics
        self._items: collections.deque[_Item] = collections.deque()
        self._arrived: Optional[asyncio.Event] = None
        self._task: Optional[asyncio.Task] = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"aetk-{name}")
        self.stats = {"requests": 0, "calls": 0, "rows": 0, "max_rows_per_call": 0}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self.name}")

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for item in self._items:
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self._items.clear()
        self._executor.shutdown(wait=False)

    @property
    def depth(self) -> int:
        return len(self._items)

    # -- requests ----------------------------------------------------------------------------
    async def submit(self, feeds: Feeds) -> Feeds:
        """Queue checked ``feeds`` and wait for their rows of a batch's outputs."""
        if len(self._items) >= self.max_queue:
            raise QueueFull(f"model {self.name!r} has {len(self._items)} requests queued "
                            f"({flag(ServeOptions, 'max_queue')})")
        item = _Item(feeds, asyncio.get_running_loop().create_future())
        self._items.append(item)
        self.stats["requests"] += 1
        self._gauge()
        self._arrived.set()
        return await item.future  # cancelled (client gone, timeout): the batcher skips it

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(len(self._items))

    def _form(self, now: float, expired: bool = False) -> Optional[list[_Item]]:
        """The next batch to run now, or None to wait for more requests; ``expired``: the
        oldest request's delay is over (its timer fired), whatever the clock reads."""
        while self._items and self._items[0].future.done():  # cancelled while queued
            self._items.popleft()
        if not self._items:
            return None
        first = self._items[0]
        batch, rows, sizes = [first], first.rows, [first.rows]
        if rows < self.max_batch:
            for item in list(self._items)[1:]:
                if item.key == first.key and not item.future.done() and rows + item.rows <= self.max_batch:
                    batch.append(item)
                    rows += item.rows
                    sizes.append(rows)
                    if rows == self.max_batch:
                        break
        if rows < self.max_batch and self.max_delay_s > 0 and not expired and now < first.t0 + self.max_delay_s:
            hit = [i for i, r in enumerate(sizes) if r in self.preferred]
            if not hit:
                return None
            batch = batch[:hit[-1] + 1]
        for item in batch:
            self._items.remove(item)
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        expired = False
        while True:
            batch = self._form(time.monotonic(), expired)
            expired = False
            if batch is None:
                self._arrived.clear()
                timeout = None
                if self._items:
                    timeout = max(0.0, self._items[0].t0 + self.max_delay_s - time.monotonic())
                try:
                    await asyncio.wait_for(self._arrived.wait(), timeout)
                except asyncio.TimeoutError:
                    # The event loop's timers tick in whole milliseconds (libuv) and may fire a
                    # little before the clock reaches the deadline: without this, a 1 ms delay
                    # waited ~3.5 ms at concurrency 1, re-arming sub-millisecond timers.
                    expired = True
                continue
            self._gauge()
            await self._execute(loop, batch)

    async def _execute(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        rows = sum(i.rows for i in batch)
        start = time.monotonic()
        try:
            if len(batch) == 1:
                feeds = batch[0].feeds
            else:
                feeds = {k: np.concatenate([i.feeds[k] for i in batch], axis=0) for k in batch[0].feeds}
            outputs = await loop.run_in_executor(self._executor, self._run, feeds)
        except Exception as exc:  # noqa: BLE001 (every waiting request hears of it; the loop goes on)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        st = self.stats
        st["calls"] += 1
        st["rows"] += rows
        st["max_rows_per_call"] = max(st["max_rows_per_call"], rows)
        if self.metrics is not None:
            m = self.metrics
            m.batch_rows.labels(self.name).observe(rows)
            m.batch_requests.labels(self.name).observe(len(batch))
            m.run_time.labels(self.name).observe(time.monotonic() - start)
            for item in batch:
                m.queue_time.labels(self.name).observe(start - item.t0)
        lo = 0
        for item in batch:
            hi = lo + item.rows
            if not item.future.done():
                item.future.set_result(outputs if len(batch) == 1 else {k: v[lo:hi] for k, v in outputs.items()})
            lo = hi


__all__ = ["ModelQueue", "QueueFull"]
