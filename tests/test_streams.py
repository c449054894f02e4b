"""Live-update streams: capped per client address and in total, carrying only the news, so
that streams which never read cannot grow the web process; the code comes from one cached
copy; a client that leaves is not an error."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil
import pytest

from tests.conftest import MakeStack
from tests.helpers import HTML, create_via_api, peak_rss, until
from tests.servers import Stack

PER_CLIENT = 20  # EVENT_STREAMS_PER_CLIENT's default
CAP_PER_CLIENT, CAP_TOTAL = 5, 8
MiB = 2**20
LINES = 5300  # of large_code()


@pytest.fixture
def streams_stack(stack: Stack) -> Stack:
    """The stack with the default stream caps (and no byte limits on new snippets)."""
    return stack


@pytest.fixture
def capped_stack(make_stack: MakeStack) -> Stack:
    """A stack with small stream caps."""
    return make_stack(shared=True, EVENT_STREAMS_PER_CLIENT=str(CAP_PER_CLIENT),
                      EVENT_STREAMS_TOTAL=str(CAP_TOTAL))


@dataclass
class RawStream:
    """One connection that asked for a stream, read the answer's head and reads no more."""

    status: int
    head: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def rest(self, timeout: float = 10.0) -> bytes:
        """Everything sent after the head, up to the end of the stream (or the timeout)."""
        received = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while b"event: done" not in received:
                    chunk = await self.reader.read(65536)
                    if not chunk:
                        break
                    received += chunk
        except TimeoutError:
            pass
        return bytes(received)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def open_stream(port: int, path: str, source: str = "127.0.0.1") -> RawStream:
    """GET a stream from ``source`` (any 127.x address is this host) with a small receive
    buffer, read its status line and headers, and then nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=8192)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 "Accept: text/event-stream\r\n\r\n".encode())
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).decode("latin-1")
    return RawStream(int(head.split(" ", 2)[1]), head, reader, writer)


@asynccontextmanager
async def streams(port: int, path: str, count: int,
                  source: str = "127.0.0.1") -> AsyncIterator[list[RawStream]]:
    """``count`` streams opened one after another (so the answers say which were refused)."""
    opened: list[RawStream] = []
    try:
        for _ in range(count):
            opened.append(await open_stream(port, path, source))
        yield opened
    finally:
        await asyncio.gather(*(stream.close() for stream in opened))


async def pending_snippet(http: aiohttp.ClientSession, stack: Stack) -> str:
    """A snippet that stays pending for an hour (its highlight is deferred)."""
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "later = 1", "highlight_in": 3600}) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


async def until_accepted(port: int, path: str, source: str = "127.0.0.1") -> RawStream:
    """Ask for a stream every 0.1 s until one is accepted (at most 5 s)."""

    async def accepted() -> RawStream | None:
        stream = await open_stream(port, path, source)
        if stream.status == 200:
            return stream
        await stream.close()
        return None

    stream = await until(accepted, 5, "a stream whose client left kept its slot",
                         interval=0.1)
    assert stream is not None
    return stream


async def until_stored(stack: Stack, ident: str, timeout: float = 60) -> str:
    """The snippet's status in the database once it is no longer pending."""
    def finished() -> str | None:
        status = stored_status(stack.db_path, ident)
        return None if status == "pending" else status

    status = await until(finished, timeout, f"snippet {ident} stayed pending", interval=0.1)
    assert status is not None
    return status


async def test_streams_are_capped_per_address_and_in_total(
        capped_stack: Stack, http: aiohttp.ClientSession) -> None:
    ident = await pending_snippet(http, capped_stack)
    port, path = capped_stack.port, f"/snippets/{ident}/events"
    async with streams(port, path, CAP_PER_CLIENT + 1) as local:
        assert [s.status for s in local[:CAP_PER_CLIENT]] == [200] * CAP_PER_CLIENT
        assert "text/event-stream" in local[0].head
        refused = local.pop()
        await refused.close()
        assert refused.status == 429, refused.head
        assert "Retry-After: " in refused.head
        async with streams(port, path, CAP_TOTAL - CAP_PER_CLIENT + 1, "127.0.0.2") as other:
            assert [s.status for s in other[:-1]] == [200] * (CAP_TOTAL - CAP_PER_CLIENT)
            assert other[-1].status == 429, "the total cap did not hold"
            third = await open_stream(port, path, "127.0.0.3")
            await third.close()
            assert third.status == 429, "the total cap did not hold for a new address"

            await local.pop(0).close()  # a client that leaves frees its slot at once
            local.append(await until_accepted(port, path))
            reset = local.pop(0)
            reset.writer.transport.abort()  # so does one whose connection resets
            await reset.close()
            local.append(await until_accepted(port, path))
            late = await open_stream(port, path, "127.0.0.3")
            await late.close()
            assert late.status == 429
    log = capped_stack.web.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def stored_status(db_path: Path, ident: str) -> str:
    with sqlite3.connect(db_path) as conn:
        return str(conn.execute("SELECT status FROM snippets WHERE slug = ?", (ident,))
                   .fetchone()[0])


def large_code() -> str:
    """About 330 KiB of Python, well inside the limits."""
    lines = (f"value_{n} = compute({n}, 'text {n}', flag=True)  # line {n}\n"
             for n in range(LINES))
    return "".join(lines)


@pytest.mark.timeout(180)
async def test_streams_that_never_read_keep_the_web_process_small(
        streams_stack: Stack, http: aiohttp.ClientSession) -> None:
    stack, web = streams_stack, psutil.Process(streams_stack.web.pid)
    assert stack.worker is not None
    stack.worker.stop()  # hold the job until every stream is open
    try:
        code = large_code()
        assert 300 * 1024 < len(code.encode()) < 360 * 1024
        ident = (await create_via_api(http, stack.url, "python", code))["id"]
        before = web.memory_info().rss
        with peak_rss(web.pid) as peak:
            async with streams(stack.port, f"/snippets/{ident}/events", PER_CLIENT) as opened:
                assert all(stream.status == 200 for stream in opened)
                stack.start_worker()
                assert await until_stored(stack, ident) == "highlighted"
                sent = await asyncio.gather(*(stream.rest() for stream in opened))
            during = peak[0]
        await until(lambda: web.memory_info().rss <= before + 8 * MiB, 10,
                    lambda: f"kept {(web.memory_info().rss - before) / MiB:.0f} MiB",
                    interval=0.1)
        after = web.memory_info().rss
    finally:
        if stack.worker is None or stack.worker.popen.poll() is not None:
            stack.start_worker()
    for received in sent:  # only the news: no code, however large the snippet
        assert b'event: done\ndata: {"status": "highlighted"}' in received, received[:300]
        assert len(received) < 1024, len(received)
    print(f"web RSS {before / MiB:.1f} MiB before, peak {during / MiB:.1f} MiB with"
          f" {PER_CLIENT} streams, {after / MiB:.1f} MiB after")
    assert during - before < 16 * MiB, f"grew {(during - before) / MiB:.0f} MiB"
    assert after - before < 8 * MiB, f"kept {(after - before) / MiB:.0f} MiB"


async def test_the_code_comes_from_one_cached_copy(
        streams_stack: Stack, http: aiohttp.ClientSession) -> None:
    stack = streams_stack
    ident = (await create_via_api(http, stack.url, "python", large_code()))["id"]
    await until_stored(stack, ident)
    web = psutil.Process(stack.web.pid)
    before = web.memory_info().rss

    async def fetch() -> tuple[int, bytes]:
        async with http.get(f"{stack.url}/snippets/{ident}/code") as response:
            return response.status, await response.read()

    with peak_rss(web.pid) as peak:
        answers = await asyncio.gather(*(fetch() for _ in range(PER_CLIENT)))
    assert {status for status, _ in answers} == {200}
    bodies = {body for _, body in answers}
    assert len(bodies) == 1
    body = bodies.pop()
    assert b'<p class="status status-highlighted">' in body
    assert f'<span class="n">value_{LINES - 1}</span>'.encode() in body
    size = len(body)
    print(f"fragment {size / MiB:.1f} MiB; web RSS peak +{(peak[0] - before) / MiB:.1f} MiB")
    # One read and one rendering, shared, not one per request (each copy is `size` bytes).
    assert peak[0] - before < 4 * size + 16 * MiB


async def test_a_finished_snippet_gets_the_news_at_once(
        streams_stack: Stack, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, streams_stack.url, "python", "x = 1\n")
    await until_stored(streams_stack, created["id"], 30)
    async with http.get(f"{streams_stack.url}/snippets/{created['id']}/events") as response:
        assert response.status == 200
        event, data = (await response.text()).strip().split("\n")
    assert event == "event: done"
    assert json.loads(data.removeprefix("data: ")) == {"status": "highlighted"}


async def test_unknown_snippets_have_no_stream_and_no_code(
        streams_stack: Stack, http: aiohttp.ClientSession) -> None:
    for path in ("/snippets/999999/events", "/snippets/999999/code"):
        async with http.get(streams_stack.url + path) as response:
            assert response.status == 404, path


@pytest.fixture
def unreachable_stack(make_stack: MakeStack) -> Stack:
    """A stack whose highlighter is gone (nothing listens on its port) once the web app has
    its list of languages."""
    stack = make_stack(HIGHLIGHT_RETRIES="0")
    stack.highlighter.stop()
    return stack


async def test_visitors_see_a_plain_reason_and_the_dashboard_the_detail(
        unreachable_stack: Stack, http: aiohttp.ClientSession) -> None:
    stack = unreachable_stack
    created = await create_via_api(http, stack.url, "python", "print('never')")
    ident = created["id"]
    await until_stored(stack, ident, 30)
    with sqlite3.connect(stack.db_path) as conn:
        stored = conn.execute("SELECT error FROM snippets WHERE slug = ?",
                              (ident,)).fetchone()[0]
    assert "ClientConnectorError" in stored, stored  # the worker's detail, as it was stored

    shown: dict[str, str] = {}
    for name in ("", "/code", "/events"):
        async with http.get(f"{stack.url}/snippets/{ident}{name}", headers=HTML) as response:
            assert response.status == 200, name
            shown[name] = await response.text()
    async with http.get(f"{stack.url}/api/snippets/{ident}") as response:
        body = await response.json()
        shown["api"] = json.dumps(body)
    plain = ('Highlighting failed: <span class="error">the highlighter could not be reached'
             '</span>')
    assert plain in shown[""] and plain in shown["/code"]
    assert json.loads(shown["/events"].split("data: ", 1)[1]) == {"status": "failed"}
    assert body["status"] == "failed"
    assert body["error"] == "the highlighter could not be reached"
    port = stack.highlighter_url.rsplit(":", 1)[1].strip("/")
    for name, text in shown.items():
        for detail in ("ClientConnectorError", "ConnectionKey", f"port={port}", port):
            assert detail not in text, (name, detail)

    async with http.get(f"{stack.url}/jobs/job/highlight:{ident}:1") as response:
        assert response.status == 200
        assert "ClientConnectorError" in await response.text()
