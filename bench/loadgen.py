"""A lean HTTP/1.1 keep-alive load generator on uvloop protocols (no dependencies beyond uvloop).

Each of N connections sends one request, reads the whole response (by Content-Length), and
sends the next, for a fixed duration. It is written against raw protocols rather than with
aiohttp's client because, on a 2-core machine, aiohttp's client tops out near the rate a
bare aiohttp server serves: it would measure itself, not the server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from bench.common import cpu_seconds


class ProtocolError(Exception):
    """The server answered something this generator does not parse (no Content-Length)."""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> int:
        return sum(count for status, count in self.statuses.items() if 200 <= status < 300)


class _Connection(asyncio.Protocol):
    """Sends ``request`` again each time a full response arrives, until ``stop_at``."""

    def __init__(self, request: bytes, stop_at: float, statuses: Counter[int],
                 done: asyncio.Future[int]) -> None:
        self.request, self.stop_at, self.statuses, self.done = request, stop_at, statuses, done
        self.buffer = bytearray()
        self.count = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).lower()
            try:
                length = _content_length(head)
            except ProtocolError as exc:
                if not self.done.done():
                    self.done.set_exception(exc)
                assert self.transport is not None
                self.transport.close()
                return
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[:end + 4 + length]
            self.statuses[int(head[9:12])] += 1
            self.count += 1
            assert self.transport is not None
            if time.perf_counter() >= self.stop_at:
                self.transport.close()
                return
            self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.count)


def _content_length(head: bytes) -> int:
    start = head.find(b"\r\ncontent-length:")
    if start < 0:
        preview = head[:200].decode(errors="replace")
        raise ProtocolError(f"response without Content-Length: {preview}")
    start += len(b"\r\ncontent-length:")
    stop = head.find(b"\r\n", start)
    return int(head[start:stop if stop > 0 else len(head)])


def build_request(method: str, port: int, path: str, body: bytes = b"",
                  content_type: str | None = None, accept: str = "*/*") -> bytes:
    """A keep-alive HTTP/1.1 request to 127.0.0.1:port (``accept="text/html"``: as a
    browser asks, which a snippet's URL answers with its page)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Accept: {accept}"]
    if body or method == "POST":
        lines += [f"Content-Type: {content_type or 'application/octet-stream'}",
                  f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def generate_load(port: int, request: bytes | Callable[[], bytes], connections: int,
                        duration: float, server_pid: int | None = None) -> LoadResult:
    """Keep ``connections`` connections busy for ``duration`` seconds; count responses."""
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    stop_at = time.perf_counter() + duration
    server_cpu = cpu_seconds(server_pid) if server_pid else 0.0
    client_cpu = time.process_time()
    started = time.perf_counter()
    futures: list[asyncio.Future[int]] = []
    errors = 0
    for _ in range(connections):
        done: asyncio.Future[int] = loop.create_future()
        payload = request() if callable(request) else request
        try:
            await loop.create_connection(
                partial(_Connection, payload, stop_at, statuses, done), "127.0.0.1", port)
        except OSError:
            errors += 1
            continue
        futures.append(done)
    counts = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True),
                                    duration + 30)
    seconds = time.perf_counter() - started
    errors += sum(1 for count in counts if isinstance(count, BaseException))
    return LoadResult(
        requests=sum(count for count in counts if isinstance(count, int)),
        seconds=seconds,
        statuses=statuses,
        errors=errors,
        client_cpu=100 * (time.process_time() - client_cpu) / seconds,
        server_cpu=100 * (cpu_seconds(server_pid) - server_cpu) / seconds if server_pid else 0.0,
    )
