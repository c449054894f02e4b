"""The front door against one hostile client: request bodies that stall or pile up, bodies
the handler must still see with the rate limit on, JSON nested too deeply, malformed request
lines, the Server header, the Secure token cookie and the private Valkey's password."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import aiohttp
import pytest
import redis

from snippet_service.valkey import free_port, private_password, start_valkey
from snippet_service.web.csrf import COOKIE_NAME, FIELD_NAME, SECURE_COOKIE_NAME
from snippet_service.web.forms import max_body_bytes
from snippet_service.web.middlewares import SERVER_NAME
from tests.conftest import MakeStack, row_count
from tests.helpers import create_via_api, owner, until, wait_for_snippet
from tests.servers import Stack

BODY_LIMIT = max_body_bytes(512 * 1024)
READ_TIMEOUT = 1.0
IN_FLIGHT = 1024 * 1024


@pytest.fixture
def front(make_stack: MakeStack) -> Stack:
    """The rate limit on, a 1 s body timeout and 1 MiB of bodies in flight per address."""
    return make_stack(shared=True, RATE_LIMIT_PER_MINUTE="1000",
                      BODY_READ_TIMEOUT=str(READ_TIMEOUT),
                      BODY_BYTES_IN_FLIGHT_PER_CLIENT=str(IN_FLIGHT))


class Raw:
    """One raw TCP connection to the web app, for what an HTTP client will not send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, stack: Stack, source: str = "127.0.0.1") -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.port,
                                                       local_addr=(source, 0))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-cased names) and body of the next response."""
        async with asyncio.timeout(timeout):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return int(lines[0].split()[1]), headers, body

    def read_by_server(self) -> bool:
        """Whether everything sent so far has left this socket and the server process has
        taken it off its own (``/proc/net/tcp``: both queues empty)."""
        local = self.writer.get_extra_info("sockname")
        server = self.writer.get_extra_info("peername")

        def address(host_port: tuple[str, int]) -> str:
            host, port = host_port
            return "".join(f"{int(part):02X}" for part in reversed(host.split("."))) + \
                f":{port:04X}"

        queues = {}
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            queues[(fields[1], fields[2])] = fields[4]
        ours = queues.get((address(local), address(server)))
        theirs = queues.get((address(server), address(local)))
        return ours == theirs == "00000000:00000000"

    async def closed_within(self, timeout: float) -> bool:
        """Whether the server closes the connection within timeout seconds."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not await self.reader.read(65536):
                        return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


def post_head(path: str, content_type: str, length: int | None = None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"{framing}\r\n\r\n").encode()


# POST /api/snippets/{id}/highlight reads its body with the rate limit on.

async def test_rehighlight_sees_its_body_with_the_rate_limit_on(
        front: Stack, http: aiohttp.ClientSession) -> None:
    assert front.env["RATE_LIMIT_PER_MINUTE"] == "1000"
    created = await create_via_api(http, front.url, "python", "print('again')\n")
    await wait_for_snippet(http, front.url, created["id"])
    url = f"{front.url}/api/snippets/{created['id']}/highlight"

    async with http.post(url, json={"language": "text"}, headers=owner(created)) as response:
        assert response.status == 202, await response.text()
        assert (await response.json())["language"] == "text"
    body = await wait_for_snippet(http, front.url, created["id"])
    assert body["language"] == "text" and body["status"] == "highlighted"
    revision = body["revision"]

    for data, content_type, status in [
        (b"not json", "application/json", 400),
        (b'{"language": "no-such-language"}', "application/json", 400),
        (b'["text"]', "application/json", 400),
        (b"language=python", "application/x-www-form-urlencoded", 415),
    ]:
        async with http.post(url, data=data, headers={"Content-Type": content_type,
                                                      **owner(created)}) as response:
            assert response.status == status, (data, await response.text())
            assert response.content_type == "application/json"
    async with http.get(f"{front.url}/api/snippets/{created['id']}") as response:
        after = await response.json()
    assert (after["language"], after["revision"]) == ("text", revision)

    async with http.post(url, headers=owner(created)) as response:  # no body: same language
        assert response.status == 202
        assert (await response.json())["language"] == "text"


@pytest.mark.parametrize("shape", ["[", '{"a": '])
async def test_deeply_nested_json_is_a_400(front: Stack, http: aiohttp.ClientSession,
                                           shape: str) -> None:
    created = await create_via_api(http, front.url, "python", "x = 1\n")
    rows = row_count(front.db_path)
    nested = (shape * 100_000).encode()
    for path in ("/api/snippets", f"/api/snippets/{created['id']}/highlight"):
        async with http.post(f"{front.url}{path}", data=nested, headers={
                "Content-Type": "application/json", **owner(created)}) as response:
            assert response.status == 400, await response.text()
            assert "nested too deeply" in (await response.json())["error"]
    assert row_count(front.db_path) == rows


# Request bodies: size, time and bytes in flight.

@pytest.mark.parametrize("rate_limit", ["on", "off"])
async def test_a_content_length_over_the_limit_is_413_before_any_body(
        front: Stack, stack: Stack, rate_limit: str) -> None:
    raw = await Raw.open(front if rate_limit == "on" else stack)
    try:
        await raw.send(post_head("/api/snippets", "application/json", BODY_LIMIT + 1))
        status, headers, _ = await raw.response(timeout=READ_TIMEOUT / 2)
        assert status == 413
        assert headers["content-type"].startswith("application/json")
    finally:
        raw.close()


@pytest.mark.parametrize(("path", "content_type", "framing"), [
    ("/api/snippets", "application/json", "content-length"),
    ("/api/snippets", "application/json", "chunked"),
    ("/snippets", "application/x-www-form-urlencoded", "content-length"),
    ("/api/snippets/1/highlight", "application/json", "content-length"),
])
async def test_a_body_that_trickles_in_is_a_408_and_the_connection_closes(
        front: Stack, path: str, content_type: str, framing: str) -> None:
    raw = await Raw.open(front)
    try:
        chunked = framing == "chunked"
        await raw.send(post_head(path, content_type, None if chunked else 1000))
        started = time.monotonic()

        async def trickle() -> None:  # a byte every 0.2 s: never idle, never done
            for _ in range(100):
                await raw.send(b"1\r\n{\r\n" if chunked else b"{")
                await asyncio.sleep(0.2)  # the slow client is the behaviour under test

        sender = asyncio.create_task(trickle())
        try:
            status, _, body = await raw.response(timeout=READ_TIMEOUT + 5)
            elapsed = time.monotonic() - started
            assert status == 408, body
            assert READ_TIMEOUT * 0.9 <= elapsed < READ_TIMEOUT + 3
            # Closed at once, not after aiohttp's 10 s of reading what is left.
            assert await raw.closed_within(3)
        finally:
            sender.cancel()
    finally:
        raw.close()
    assert "the body did not arrive within" in front.web.log()


async def test_bodies_in_flight_from_one_address_are_capped(
        front: Stack, http: aiohttp.ClientSession) -> None:
    size = 700_000  # two of them are over the 1 MiB in flight allowed
    body = b'{"language": "python", "code": "x = 1"}'
    padded = body + b" " * (size - len(body))  # trailing spaces: still valid JSON
    first = await Raw.open(front)
    others: list[Raw] = []
    try:
        await first.send(post_head("/api/snippets", "application/json", size) + padded[:100_000])
        await until(first.read_by_server, 5, "the server never read the first body's start")
        refused = 0
        for _ in range(20):
            raw = await Raw.open(front)
            others.append(raw)
            await raw.send(post_head("/api/snippets", "application/json", size))
            status, headers, _ = await raw.response(timeout=READ_TIMEOUT / 2)
            assert status == 429 and int(headers["retry-after"]) >= 1
            refused += 1
        assert refused == 20
        # Another address is not held up by this one.
        other = await Raw.open(front, source="127.0.0.2")
        others.append(other)
        await other.send(post_head("/api/snippets", "application/json", size) + padded)
        status, _, answer = await other.response()
        assert status == 201, answer
        # The stalled body times out and frees the allowance.
        status, _, _ = await first.response(timeout=READ_TIMEOUT + 5)
        assert status == 408
    finally:
        for raw in [first, *others]:
            raw.close()
    async with http.post(f"{front.url}/api/snippets", data=padded,
                         headers={"Content-Type": "application/json"}) as response:
        assert response.status == 201


# Malformed requests and the Server header.

MALFORMED = [
    b"GET / HTTP/1.1 and more\r\nHost: x\r\n\r\n",
    b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(32) + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\nNOT-A-METHOD / HTTP/1.1\r\n\r\n",
]


async def test_malformed_requests_are_a_400_and_one_quiet_log_line(front: Stack) -> None:
    for request in MALFORMED:
        raw = await Raw.open(front)
        try:
            await raw.send(request)
            status, headers, _ = await raw.response()
            if status == 200:  # the pipelined case: a good request, then garbage
                status, headers, _ = await raw.response()
            assert status == 400, request
            assert headers.get("server", SERVER_NAME) == SERVER_NAME
        finally:
            raw.close()
    await until(lambda: front.web.log().count("malformed request from") >= 4, 10,
                "fewer than 4 malformed requests logged")
    log = front.web.log()
    assert "Traceback" not in log and " ERROR " not in log, log
    assert "malformed request from 127.0.0.1: 400" in log


async def test_no_response_names_the_software_version(
        front: Stack, http: aiohttp.ClientSession) -> None:
    for path in ("/", "/no-such-page", "/api/snippets/999999", "/static/site.css", "/healthz"):
        async with http.get(f"{front.url}{path}") as response:
            assert response.headers["Server"] == SERVER_NAME, path


# The token cookie behind TLS.

async def test_cookie_secure_sets_a_host_prefixed_secure_cookie(
        make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    stack = make_stack(COOKIE_SECURE="1")
    async with http.get(f"{stack.url}/") as response:
        cookies = response.headers.getall("Set-Cookie")
    assert len(cookies) == 1
    cookie = cookies[0]
    assert cookie.startswith(f"{SECURE_COOKIE_NAME}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"secure", "path", "httponly"} <= attributes and "domain" not in attributes
    assert "Path=/;" in cookie + ";"
    token = cookie.split(";")[0].split("=", 1)[1]
    fields = {FIELD_NAME: token, "language": "python", "plain_code": "x = 1"}
    for name, status in ((COOKIE_NAME, 403), (SECURE_COOKIE_NAME, 303)):
        async with http.post(f"{stack.url}/snippets", data=fields, allow_redirects=False,
                             headers={"Cookie": f"{name}={token}"}) as response:
            assert response.status == status, name


# The private Valkey's password.

def test_the_private_password_is_made_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "valkey" / "password"
    password = private_password(path)
    assert len(password) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert private_password(path) == password
    path.write_text("")
    assert private_password(path) not in ("", password)


def test_a_valkey_with_a_password_refuses_other_clients(tmp_path: Path) -> None:
    port, password = free_port(), private_password(tmp_path / "password")
    process = start_valkey(port, tmp_path / "data", persistent=False, password=password)
    try:
        assert password not in " ".join(Path(f"/proc/{process.pid}/cmdline").read_text())
        anonymous = redis.Redis(port=port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        client = redis.Redis.from_url(f"redis://:{password}@127.0.0.1:{port}/0")
        assert client.ping()
        client.close()
    finally:
        process.terminate()
        process.wait(10)

