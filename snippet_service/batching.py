"""Group work that arrives together into one round trip: a micro-batcher.

Coroutines ``await batcher.submit(item)``. The first item of a batch waits ``delay``
seconds (or only until the event loop has run every other ready coroutine, when the delay
is 0), so items submitted in the same tick travel together. One flush runs at a time:
items that arrive while a batch is being flushed form the next batch, which is how a
single writer commits everything that waited for it in one transaction (group commit).
With ``concurrency`` above 1, that many batches may be in flight at once (the next one
gathers while the others are being flushed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[Sequence[T]], Awaitable[Sequence[R]]]


class Batcher(Generic[T, R]):
    """Collects items and hands them to ``flush`` together; each caller gets its result.

    ``flush`` returns one result per item, in order. If it raises, every caller of that
    batch gets the exception. A caller that is cancelled while waiting does not stop the
    batch: its item is still flushed (the flush itself is never cancelled by a caller).
    """

    def __init__(self, flush: Flush[T, R], *, delay: float = 0.0, max_size: int = 500,
                 concurrency: int = 1, name: str = "batch") -> None:
        self._flush = flush
        self._delay = delay
        self._max_size = max_size
        self._concurrency = concurrency
        self._name = name
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []
        self._runners: set[asyncio.Task[None]] = set()
        self._gathering = False
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """Queue one item for the next batch and wait for its result."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._futures.append(future)
        if not self._gathering and len(self._runners) < self._concurrency:
            self._gathering = True
            runner = asyncio.create_task(self._run(), name=f"{self._name}-flusher")
            self._runners.add(runner)
            runner.add_done_callback(self._runners.discard)  # also if it never ran
        return await future

    async def _run(self) -> None:
        try:
            try:
                # every coroutine ready in this tick (or within the delay) submits first
                await asyncio.sleep(self._delay)
            finally:
                self._gathering = False
            while self._items:
                items = self._items[: self._max_size]
                futures = self._futures[: self._max_size]
                del self._items[: self._max_size], self._futures[: self._max_size]
                await self._flush_one(items, futures)
        except asyncio.CancelledError:  # shutdown: callers still waiting get no result
            for future in self._futures:
                future.cancel()
            self._items.clear()
            self._futures.clear()
            raise
        finally:
            # Leave the count of runners now, in the same step as the last look at the
            # items: an item submitted after it must start a runner of its own, which a
            # runner still counted (until its done callback ran) would have prevented.
            runner = asyncio.current_task()
            if runner is not None:
                self._runners.discard(runner)

    async def _flush_one(self, items: list[T], futures: list[asyncio.Future[R]]) -> None:
        self.batches += 1
        self.items += len(items)
        try:
            results = await self._flush(items)
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (shutdown): nobody gets a result
            for future in futures:
                future.cancel()
            raise
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def close(self) -> None:
        """Wait for the batches already submitted to be flushed."""
        while self._runners:
            await asyncio.shield(asyncio.gather(*self._runners, return_exceptions=True))
