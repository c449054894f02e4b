"""Rendered pages of finished snippets, kept per web process.

Requests for a body being rendered wait for that rendering instead of starting their own.
A finished snippet's page changes only when it is highlighted again (a new revision) or
expires. Every change is announced on the snippet-done channel, which evicts the entry in
every web process; a process that lost the channel forgets everything, and an entry
carries its snippet's expiry time.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_ENTRIES = 2000
MAX_BYTES = 64 * 1024 * 1024
KINDS = ("page", "json", "code", "text")


@dataclass(frozen=True)
class Entry:
    body: bytes
    expires_at: float | None
    owner_hash: str | None = None  # its owner is shown another page (see web/lookup.py)


class PageCache:
    """A least-recently-used map of (kind, snippet id) to rendered bodies, bounded in size."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self._entries: OrderedDict[tuple[str, str], Entry] = OrderedDict()
        self._rendering: dict[tuple[str, str], asyncio.Task[bytes]] = {}
        self._bytes = 0
        self.evictions = 0  # read before a miss; put() refuses a body older than an eviction
        # Burn-after-reading snippets this process handed to their one reader: a request
        # that shared that reading (see shared()) must not see it too.
        self._burned: OrderedDict[str, None] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def entry(self, kind: str, snippet_id: str) -> Entry | None:
        """The cached entry, or None (also once the snippet has expired)."""
        entry = self._entries.get((kind, snippet_id))
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= time.time():
            self.evict(snippet_id)
            return None
        self._entries.move_to_end((kind, snippet_id))
        return entry

    def put(self, kind: str, snippet_id: str, body: bytes, expires_at: float | None,
            evictions: int, owner_hash: str | None = None) -> None:
        """Keep a body of a finished snippet (one of KINDS), rendered from a read made when
        ``evictions`` was current: if anything was evicted since, the body may be stale."""
        if evictions != self.evictions or kind not in KINDS or len(body) > self.max_bytes // 8:
            return
        self._drop((kind, snippet_id))
        self._entries[(kind, snippet_id)] = Entry(body, expires_at, owner_hash)
        self._bytes += len(body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    async def shared(self, kind: str, snippet_id: str,
                     render: Callable[[], Awaitable[bytes]]) -> bytes:
        """``render()``, or the rendering of the same body already under way: one read and
        one copy however many requests ask at once (a caller that is cancelled does not
        cancel it for the others)."""
        key = (kind, snippet_id)
        task = self._rendering.get(key)
        if task is None:
            task = self._rendering[key] = asyncio.ensure_future(render())
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: tuple[str, str], task: asyncio.Task[bytes]) -> None:
        if self._rendering.get(key) is task:
            del self._rendering[key]
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every caller was cancelled

    def note_burned(self, snippet_id: str) -> None:
        self._burned[snippet_id] = None
        while len(self._burned) > MAX_ENTRIES:
            self._burned.popitem(last=False)

    def was_burned(self, snippet_id: str) -> bool:
        return snippet_id in self._burned

    def evict(self, snippet_id: str) -> None:
        """Forget every page of this snippet."""
        self.evictions += 1
        for kind in KINDS:
            self._drop((kind, snippet_id))

    def clear(self) -> None:
        self.evictions += 1
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.body)
