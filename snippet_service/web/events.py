"""One Redis subscription per web process that wakes the pages waiting on a snippet and
evicts changed snippets from the page cache; the count of open live-update streams."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from snippet_service.control import CONTROL_NOTICE, ControlState
from snippet_service.db import ID_PATTERN
from snippet_service.queue import DONE_CHANNEL
from snippet_service.web.cache import PageCache

logger = logging.getLogger("snippet_service.web.events")


class StreamsFull(Exception):
    """No stream slot is free, for this client or for everyone."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_CONTROL_NOTICE = CONTROL_NOTICE.encode()
# How often the open streams are checked for clients that left (one pass for all of them).
SWEEP_SECONDS = 0.25


class Slot:
    """One open stream: ``gone()`` says whether its client left; the sweep then sets
    ``wake`` so the stream ends at once rather than at its next write."""

    def __init__(self, gone: Callable[[], bool]) -> None:
        self.gone = gone
        self.wake: asyncio.Event | None = None


class StreamSlots:
    """Open live-update streams in this process, per client address and in total."""

    def __init__(self, per_client: int, total: int) -> None:
        self.per_client = per_client
        self.total = total
        self._by_client: defaultdict[str, int] = defaultdict(int)
        self._slots: set[Slot] = set()
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def open(self) -> int:
        return len(self._slots)

    def count(self, client: str) -> int:
        """Streams this client has open now."""
        return self._by_client.get(client, 0)

    @contextmanager
    def hold(self, client: str, gone: Callable[[], bool]) -> Iterator[Slot]:
        """A slot for one stream while the block runs; StreamsFull when none is free."""
        if self.count(client) >= self.per_client:
            raise StreamsFull(f"Your address has {self.per_client} live-update streams open"
                              " already; close a page first.")
        if self.open >= self.total:
            raise StreamsFull("Too many live-update streams are open; try again shortly.")
        slot = Slot(gone)
        self._by_client[client] += 1
        self._slots.add(slot)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        try:
            yield slot
        finally:
            self._slots.discard(slot)
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]

    async def _sweep(self) -> None:
        """Wake the streams whose clients left, while any stream is open."""
        while self._slots:
            await asyncio.sleep(SWEEP_SECONDS)
            for slot in list(self._slots):
                if slot.wake is not None and slot.gone():
                    slot.wake.set()


class DoneListener:
    """Listens on the snippet-done channel and sets the events of pages watching a snippet."""

    def __init__(self, redis: Redis, cache: PageCache) -> None:
        self._redis = redis
        self._cache = cache
        self._watchers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        # Paused queues and the breaker, re-read when the channel says they changed.
        self.control = ControlState()

    @contextmanager
    def watch(self, snippet_id: str) -> Iterator[asyncio.Event]:
        """An event set when the snippet may have finished (or the listener reconnected)."""
        event = asyncio.Event()
        self._watchers[snippet_id].add(event)
        try:
            yield event
        finally:
            watchers = self._watchers[snippet_id]
            watchers.discard(event)
            if not watchers:
                del self._watchers[snippet_id]

    def _wake(self, snippet_id: str | None = None) -> None:
        if snippet_id is None:
            self._cache.clear()
            groups = list(self._watchers.values())
        else:
            self._cache.evict(snippet_id)
            groups = [self._watchers.get(snippet_id, set())]
        for group in groups:
            for event in group:
                event.set()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff when Redis goes away."""
        delay = 0.1
        while True:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(DONE_CHANNEL)
                    delay = 0.1
                    await self.control.refresh(self._redis)
                    self._wake()  # anything finished while we were away
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):  # one id, or many joined by commas
                            for part in data.split(b","):
                                if ID_PATTERN.fullmatch(part.decode("ascii", "replace")):
                                    self._wake(part.decode())
                                elif part == _CONTROL_NOTICE:  # pages say "delayed" or not
                                    await self.control.refresh(self._redis)
                                    self._wake()
            except (RedisError, OSError) as exc:
                self._cache.clear()  # changes announced while we are away would be missed
                logger.warning("done channel lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
