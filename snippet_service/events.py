"""One Redis subscription per web process that wakes the pages waiting on a snippet and
evicts changed snippets from the page cache."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from redis.asyncio import Redis
from redis.exceptions import RedisError

from snippet_service.cache import PageCache
from snippet_service.queue import DONE_CHANNEL

logger = logging.getLogger("snippet_service.events")


class DoneListener:
    """Listens on the snippet-done channel and sets the events of pages watching a snippet."""

    def __init__(self, redis: Redis, cache: PageCache) -> None:
        self._redis = redis
        self._cache = cache
        self._watchers: defaultdict[int, set[asyncio.Event]] = defaultdict(set)

    @contextmanager
    def watch(self, snippet_id: int) -> Iterator[asyncio.Event]:
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

    def _wake(self, snippet_id: int | None = None) -> None:
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
                    self._wake()  # anything finished while we were away
                    async for message in pubsub.listen():
                        data = message.get("data")
                        if isinstance(data, bytes):  # one id, or many joined by commas
                            for part in data.split(b","):
                                if part.isdigit():
                                    self._wake(int(part))
            except (RedisError, OSError) as exc:
                self._cache.clear()  # changes announced while we are away would be missed
                logger.warning("done channel lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
