"""In-process, per-client counters of the web front door: request-body bytes being read
at once, and dashboard password failures in a fixed window. Each web process keeps its own.
"""

from __future__ import annotations

import time

MAX_TRACKED = 10_000  # clients remembered at once; the oldest are forgotten first


class BytesInFlight:
    """Bytes of request bodies being read from each client right now, capped per client."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def reserve(self, client: str, size: int) -> bool:
        """Count ``size`` bytes for client, or refuse (False) when that would pass the limit.

        A client with nothing in flight may always send one body, whatever its size.
        """
        held = self._held.get(client, 0)
        if held and held + size > self.limit:
            return False
        self._held[client] = held + size
        return True

    def release(self, client: str, size: int) -> None:
        left = self._held.get(client, 0) - size
        if left > 0:
            self._held[client] = left
        else:
            self._held.pop(client, None)

    def held(self, client: str) -> int:
        return self._held.get(client, 0)


class FailureWindow:
    """At most ``limit`` failures per client in a fixed window of ``seconds``."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self._windows: dict[str, tuple[float, int]] = {}  # client -> (window end, failures)

    def _current(self, client: str, now: float) -> tuple[float, int]:
        end, count = self._windows.get(client, (0.0, 0))
        return (end, count) if end > now else (now + self.seconds, 0)

    def blocked_for(self, client: str) -> float:
        """Seconds until client may try again (0 when it may try now)."""
        now = time.monotonic()
        end, count = self._current(client, now)
        return end - now if count >= self.limit else 0.0

    def fail(self, client: str) -> None:
        now = time.monotonic()
        end, count = self._current(client, now)
        self._windows.pop(client, None)  # re-inserted last: the dict stays oldest-first
        self._windows[client] = (end, count + 1)
        if len(self._windows) > MAX_TRACKED:
            self._forget(now)

    def _forget(self, now: float) -> None:
        for client, (end, _count) in list(self._windows.items()):
            if end <= now:
                del self._windows[client]
        while len(self._windows) > MAX_TRACKED:
            del self._windows[next(iter(self._windows))]
