"""One bounded worker pool and one write batcher, shared by metadata refresh and file
mirroring.

:func:`run_pool` hands items to at most ``workers`` tasks; a failing item is the handler's
business (it reports and returns), so one item never stops the others. :class:`Batch`
collects results and hands them to a blocking writer in a thread, in batches bounded by a
count, a weight (bytes of text held in memory) or an age.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["Batch", "run_pool"]

T = TypeVar("T")


async def run_pool(
    items: Iterable[T],
    handle: Callable[[T], Awaitable[None]],
    *,
    workers: int,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``handle`` over ``items`` in at most ``workers`` concurrent tasks, in order of
    ``items``. Once ``stop`` is set, no new item starts. An exception that escapes
    ``handle`` ends the pool (the task group cancels the other workers) and is raised."""
    queue: asyncio.Queue[T] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while stop is None or not stop.is_set():
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await handle(item)

    async with asyncio.TaskGroup() as tg:
        for _ in range(max(1, min(queue.qsize(), workers))):
            tg.create_task(worker())


class Batch(Generic[T]):
    """Results waiting to be written by ``write`` (a blocking call, run in a thread).

    :meth:`add` flushes once ``max_items`` results, or ``max_weight`` of weight, or results
    older than ``max_age`` seconds are waiting. With ``wait=True`` a worker that triggers a
    flush waits for the writer (back-pressure: memory stays bounded by one batch); with
    ``wait=False`` it goes on when a write is already under way (transfers never wait for
    the database), and the next :meth:`add` or :meth:`flush` catches up.
    """

    def __init__(
        self,
        write: Callable[[list[T]], None],
        *,
        max_items: int,
        max_weight: int | None = None,
        max_age: float | None = None,
        wait: bool = True,
    ) -> None:
        self._write = write
        self._max_items = max_items
        self._max_weight = max_weight
        self._max_age = max_age
        self._wait = wait
        self._items: list[T] = []
        self._weight = 0
        self._since = time.monotonic()
        self._lock = asyncio.Lock()

    def _due(self) -> bool:
        if len(self._items) >= self._max_items:
            return True
        if self._max_weight is not None and self._weight >= self._max_weight:
            return True
        return self._max_age is not None and time.monotonic() - self._since > self._max_age

    def put(self, item: T, weight: int = 0) -> None:
        """Queue ``item`` without flushing (see :meth:`maybe_flush`)."""
        self._items.append(item)
        self._weight += weight

    async def add(self, item: T, weight: int = 0) -> None:
        """Queue ``item``, then flush if a bound is reached."""
        self.put(item, weight)
        await self.maybe_flush()

    async def maybe_flush(self) -> None:
        if self._lock.locked() and not self._wait:
            return  # a write is under way; do not wait for it
        if self._due():
            await self.flush()

    async def flush(self) -> None:
        """Write everything waiting (after any write under way)."""
        async with self._lock:
            if not self._items:
                return
            chunk, self._items, self._weight = self._items, [], 0
            self._since = time.monotonic()
            await asyncio.to_thread(self._write, chunk)
