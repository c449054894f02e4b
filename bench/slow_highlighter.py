"""A stand-in highlighter that answers after a fixed delay: ``python -m bench.slow_highlighter PORT
[DELAY]``.

A bare ``asyncio.Protocol`` HTTP/1.1 server on uvloop (no aiohttp server, no task per
request), so that it is never what limits a benchmark: ``POST`` to any path but ``/reset``
reads the body by its Content-Length, and ``loop.call_later`` answers DELAY seconds (0.1 by
default) later with a small Pygments-like HTML fragment as ``text/html; charset=utf-8``.
Connections are kept alive (HTTP/1.1) unless the request says ``Connection: close`` (as
Ruby's ``Net::HTTP.post_form`` does) or is HTTP/1.0; pipelined requests are answered in
order.

``GET /stats`` reports, as JSON: the wall-clock time (``time.time()``) of the first request
and of the last answer, how many were answered, how many are in flight and the peak, the
server's own CPU seconds (user + system) and its delay. ``POST /reset`` starts those counters
afresh (the peak from what is in flight now). ``GET /languages`` lists Python, for a web app
that asks.

:func:`stand_in` runs one as a child process; :class:`StandIn` reads or resets its counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import uvloop

from bench.common import Child, app_env
from snippet_service.valkey import free_port

FRAGMENT = (
    b'<div class="highlight"><pre><span></span><span class="k">def</span> <span class="nf">f'
    b'</span><span class="p">():</span>\n    <span class="k">return</span> <span class="mi">1'
    b"</span>\n</pre></div>\n"
)
LANGUAGES = json.dumps([{"name": "Python", "aliases": ["python", "py"]}]).encode()
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
BACKLOG = 4096
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 411: "Length Required",
           413: "Content Too Large", 431: "Request Header Fields Too Large"}


def response(status: int, body: bytes, content_type: str, close: bool) -> bytes:
    """A whole HTTP/1.1 response."""
    lines = [f"HTTP/1.1 {status} {REASONS[status]}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}"]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# The two answers to a highlight request, built once.
HTML = "text/html; charset=utf-8"
ANSWER = {close: response(200, FRAGMENT, HTML, close) for close in (False, True)}


@dataclass
class Stats:
    """The counters ``GET /stats`` reports."""

    first: float = 0.0
    last: float = 0.0
    answered: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    cpu_seconds: float = 0.0
    time: float = 0.0
    delay: float = 0.0

    def reset(self) -> None:
        self.first = self.last = 0.0
        self.answered = 0
        self.peak_in_flight = self.in_flight

    def snapshot(self) -> bytes:
        times = os.times()
        self.cpu_seconds = times.user + times.system
        self.time = time.time()
        return json.dumps(asdict(self)).encode()


@dataclass
class Head:
    """A parsed request head waiting for its body."""

    method: str
    path: str
    length: int
    close: bool
    end: int  # where the body starts in the buffer


class HighlighterProtocol(asyncio.Protocol):
    """One client connection: parses requests, answers them in order."""

    def __init__(self, stats: Stats, delay: float) -> None:
        self.stats = stats
        self.delay = delay
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: Head | None = None
        # One slot per request read, in order: its answer once ready, and whether to close.
        self.answers: deque[list[Any]] = deque()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while not self.closing:
            head = self.head or self._parse_head()
            if head is None:
                return
            if len(self.buffer) < head.end + head.length:
                self.head = head
                return
            del self.buffer[:head.end + head.length]  # the body itself is not needed
            self.head = None
            self._dispatch(head)

    def _parse_head(self) -> Head | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._fail(431)
            return None
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._fail(400)
            return None
        method, target, version = parts
        length, connection, chunked = 0, "", False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value) if value.strip().isdigit() else -1
            elif name == "connection":
                connection = value.strip().lower()
            elif name == "transfer-encoding":
                chunked = True
            elif name == "expect" and value.strip().lower() == "100-continue" and self.transport:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if chunked or length < 0 or length > MAX_BODY:
            self._fail(411 if chunked else 413 if length > MAX_BODY else 400)
            return None
        close = connection == "close" if version == "HTTP/1.1" else connection != "keep-alive"
        return Head(method, target.partition("?")[0], length, close, end + 4)

    def _dispatch(self, head: Head) -> None:
        slot: list[Any] = [None, head.close]
        self.answers.append(slot)
        if head.close:
            self.closing = True  # nothing after this request is read
        if head.method == "POST" and head.path != "/reset":
            stats = self.stats
            if not stats.first:
                stats.first = time.time()
            stats.in_flight += 1
            if stats.in_flight > stats.peak_in_flight:
                stats.peak_in_flight = stats.in_flight
            self.loop.call_later(self.delay, self._answer, slot)
            return
        if head.method == "POST":
            self.stats.reset()
            slot[0] = response(200, self.stats.snapshot(), "application/json", head.close)
        elif head.method == "GET" and head.path == "/stats":
            slot[0] = response(200, self.stats.snapshot(), "application/json", head.close)
        elif head.method == "GET" and head.path == "/languages":
            slot[0] = response(200, LANGUAGES, "application/json", head.close)
        else:
            slot[0] = response(404, b"not found\n", "text/plain; charset=utf-8", head.close)
        self._flush()

    def _answer(self, slot: list[Any]) -> None:
        stats = self.stats
        stats.in_flight -= 1
        if self.transport is None:
            return
        stats.answered += 1
        stats.last = time.time()
        slot[0] = ANSWER[slot[1]]
        self._flush()

    def _flush(self) -> None:
        """Write the answers that are ready, in request order."""
        answers = self.answers
        while answers and answers[0][0] is not None and self.transport is not None:
            data, close = answers.popleft()
            self.transport.write(data)
            if close:
                self.transport.close()
                self.transport = None

    def _fail(self, status: int) -> None:
        """A request that cannot be read: answer it (after the ones before it) and close."""
        self.closing = True
        self.answers.append([response(status, b"", "text/plain", True), True])
        self._flush()


async def serve(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats(delay=delay)
    server = await loop.create_server(lambda: HighlighterProtocol(stats, delay),
                                      "127.0.0.1", port, backlog=BACKLOG, reuse_address=True)
    stopped = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        await stopped.wait()


class StandIn:
    """The control endpoints of a running stand-in (and its pid when this process runs it)."""

    def __init__(self, url: str, pid: int | None = None) -> None:
        self.url = url
        self.pid = pid

    def _call(self, method: str, path: str) -> dict[str, Any]:
        # Straight to 127.0.0.1, whatever *_proxy says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.url + path, method=method,
                                         data=b"" if method == "POST" else None)
        with opener.open(request, timeout=10) as answer:
            values: dict[str, Any] = json.load(answer)
        return values

    def stats(self) -> dict[str, Any]:
        """The counters, see this module's docstring."""
        return self._call("GET", "stats")

    def reset(self) -> dict[str, Any]:
        """Start the counters afresh; returns them (with the CPU seconds so far)."""
        return self._call("POST", "reset")


@contextlib.contextmanager
def stand_in(directory: Path, delay: float, name: str = "slow-highlighter") -> Iterator[StandIn]:
    """Run a stand-in on a free port until the block ends."""
    port = free_port()
    child = Child(name, ["-m", "bench.slow_highlighter", str(port), str(delay)], app_env(),
                  directory)
    try:
        child.wait_for_port(port)
        yield StandIn(f"http://127.0.0.1:{port}/", child.pid)
    finally:
        child.stop()


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    uvloop.run(serve(port, delay))


if __name__ == "__main__":
    main()
