"""Limits: code over MAX_SNIPPET_BYTES and bodies over the request limit are a 413 page
(JSON under /api) that stores and enqueues nothing; creating snippets is rate-limited per
client address, counted in Redis and shared by every web process."""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest
import redis
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from snippet_service.config import Config, ConfigError
from snippet_service.web.csrf import FIELD_NAME
from snippet_service.web.forms import max_body_bytes
from snippet_service.web.hits import KEY_PREFIX
from snippet_service.web.ratelimit import client_key
from tests.conftest import MakeStack, queued_jobs, row_count
from tests.helpers import create_via_api, form_token, post_form, token_cookie, until
from tests.servers import Stack, start_private_valkey

LIMIT = Config().max_snippet_bytes
BODY_LIMIT = max_body_bytes(LIMIT)
RATE = 5


def too_large(text: str) -> bool:
    return f"the code may be at most {LIMIT} bytes" in text or f"the limit is {LIMIT}" in text


async def post_body(http: aiohttp.ClientSession, url: str, body: bytes, content_type: str,
                    headers: dict[str, str] | None = None) -> tuple[int, str, CIMultiDict[str]]:
    """POST bytes as they are (from a file object: aiohttp warns about big raw bodies)."""
    async with http.post(url, data=io.BytesIO(body),
                         headers={"Content-Type": content_type, **(headers or {})}) as response:
        return response.status, await response.text(), response.headers.copy()


# The size cap.

def test_the_request_limit_fits_the_largest_url_encoded_form() -> None:
    assert BODY_LIMIT >= 3 * LIMIT  # every byte of code as %XX
    assert Config().max_snippet_bytes == 512 * 1024


@pytest.mark.parametrize(("code", "accepted"), [
    ("x" * LIMIT, True),
    ("x" * (LIMIT + 1), False),
    ("é" * (LIMIT // 2), True),       # bytes are counted, not characters
    ("é" * (LIMIT // 2 + 1), False),
])
async def test_code_size_is_capped_in_bytes_for_the_api(
        stack: Stack, http: aiohttp.ClientSession, code: str, accepted: bool) -> None:
    rows = row_count(stack.db_path)
    status, text, _ = await post_body(http, f"{stack.url}/api/snippets",
                                      json.dumps({"language": "text", "code": code}).encode(),
                                      "application/json")
    body = json.loads(text)
    if accepted:
        assert status == 201, body
        assert row_count(stack.db_path) == rows + 1
    else:
        assert status == 413
        assert too_large(body["error"])
        assert body["status"] == 413 and body["request_id"]
        assert row_count(stack.db_path) == rows


@pytest.mark.parametrize("code", ["x" * (LIMIT + 1), "é" * (LIMIT // 2 + 1)])
async def test_code_over_the_cap_from_the_form_is_a_413_page(
        stack: Stack, http: aiohttp.ClientSession, code: str) -> None:
    rows, jobs = row_count(stack.db_path), queued_jobs(stack.redis_url)
    token = await form_token(http, stack.url)
    form = urlencode({FIELD_NAME: token, "language": "python", "plain_code": code}).encode()
    assert len(form) <= BODY_LIMIT  # the body fits: it is the code that is too large
    status, page, headers = await post_body(http, f"{stack.url}/snippets", form,
                                            "application/x-www-form-urlencoded",
                                            token_cookie(token))
    assert status == 413
    assert headers["Content-Type"].startswith("text/html")
    assert "413 · Too large" in page and too_large(page)
    assert len(page) < 10_000  # the code is not echoed back
    assert row_count(stack.db_path) == rows
    assert queued_jobs(stack.redis_url) <= jobs


async def _stream(total: int) -> AsyncIterator[bytes]:
    """A body sent chunked, without a Content-Length."""
    sent = 0
    while sent < total:
        chunk = b"x" * min(64 * 1024, total - sent)
        sent += len(chunk)
        yield chunk


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("kind", ["form", "multipart", "api"])
async def test_bodies_over_the_request_limit_get_our_413(
        stack: Stack, http: aiohttp.ClientSession, kind: str, framing: str) -> None:
    rows, jobs = row_count(stack.db_path), queued_jobs(stack.redis_url)
    token = await form_token(http, stack.url)
    size = BODY_LIMIT + 1024
    path = "/api/snippets" if kind == "api" else "/snippets"
    content_type = {"form": "application/x-www-form-urlencoded",
                    "multipart": "multipart/form-data; boundary=b",
                    "api": "application/json"}[kind]
    prefix = {"form": f"{FIELD_NAME}={token}&language=python&plain_code=".encode(),
              "multipart": (f'--b\r\nContent-Disposition: form-data; name="{FIELD_NAME}"\r\n\r\n'
                            f'{token}\r\n--b\r\nContent-Disposition: form-data;'
                            ' name="plain_code"\r\n\r\n').encode(),
              "api": b'{"language": "python", "code": "'}[kind]

    async def body() -> AsyncIterator[bytes]:
        yield prefix
        async for chunk in _stream(size):
            yield chunk

    data = io.BytesIO(prefix + b"x" * size) if framing == "content-length" else body()
    async with http.post(f"{stack.url}{path}", data=data,
                         headers={"Content-Type": content_type, **token_cookie(token)}) as response:
        text = await response.text()
        assert ("Content-Length" in response.request_info.headers) == (framing != "chunked")
    assert response.status == 413
    if kind == "api":
        assert response.content_type == "application/json"
    else:
        assert response.content_type == "text/html" and "413 · Too large" in text
    assert too_large(text), text
    assert row_count(stack.db_path) == rows
    assert queued_jobs(stack.redis_url) <= jobs


# The rate limit.

def test_rate_limit_setting() -> None:
    assert Config.from_env({}).rate_limit_per_minute == 60
    assert Config.from_env({"RATE_LIMIT_PER_MINUTE": "0"}).rate_limit_per_minute == 0
    assert Config.from_env({"RATE_LIMIT_PER_MINUTE": "500"}).rate_limit_per_minute == 500
    for bad in ("-1", "many", "1.5"):
        with pytest.raises(ConfigError, match="RATE_LIMIT_PER_MINUTE"):
            Config.from_env({"RATE_LIMIT_PER_MINUTE": bad})


@pytest.mark.parametrize(("remote", "key"), [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),  # one IPv6 client holds a /64
    ("::ffff:203.0.113.7", "203.0.113.7"),
])
def test_clients_are_counted_by_address(remote: str, key: str) -> None:
    assert client_key(make_mocked_request("POST", "/").clone(remote=remote)) == key


class LimitedStack:
    """A stack with RATE_LIMIT_PER_MINUTE=RATE and a second web process on the same Redis."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.web2, url = stack.start_web("web2")
        self.urls = (stack.url, url)

    def reset(self) -> None:
        client = redis.Redis.from_url(self.stack.redis_url)
        try:
            for key in client.scan_iter(KEY_PREFIX + "*"):
                client.delete(key)
        finally:
            client.close()

    def counter(self) -> tuple[int, float]:
        """This client's count and the seconds its window has left."""
        client = redis.Redis.from_url(self.stack.redis_url)
        try:
            key = KEY_PREFIX + "127.0.0.1"
            return int(client.get(key) or 0), client.pttl(key) / 1000
        finally:
            client.close()


_second_web: dict[Stack, LimitedStack] = {}


@pytest.fixture
def limited(make_stack: MakeStack) -> LimitedStack:
    """The module's stack with the rate limit on, and its second web process."""
    stack = make_stack(shared=True, RATE_LIMIT_PER_MINUTE=str(RATE))
    if stack not in _second_web:
        _second_web[stack] = LimitedStack(stack)  # its web2 stops with the stack
    return _second_web[stack]


async def test_over_the_limit_is_429_with_retry_after_shared_by_web_processes(
        limited: LimitedStack, http: aiohttp.ClientSession) -> None:
    limited.reset()
    first, second = limited.urls
    rows = row_count(limited.stack.db_path)
    # RATE creations, through both processes and both ways in: all accepted.
    for n in range(RATE):
        url = (first, second)[n % 2]
        if n < 2:
            status, page, _ = await post_form(http, url, {"language": "python",
                                                          "plain_code": f"n = {n}"})
            assert status == 303, page
        else:
            await create_via_api(http, url, "python", f"n = {n}")
    assert limited.counter()[0] == RATE

    for url in (first, second):  # the next one is refused by either process
        async with http.post(f"{url}/api/snippets",
                             json={"language": "python", "code": "one too many"}) as response:
            body = await response.json()
        assert response.status == 429
        retry_after = int(response.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        assert body["status"] == 429 and body["request_id"]
        assert f"the limit is {RATE} a minute" in body["error"]
        assert f"Try again in {retry_after} seconds" in body["error"]

        status, page, headers = await post_form(http, url, {"language": "python",
                                                            "plain_code": "one too many"})
        assert status == 429
        assert headers["Content-Type"].startswith("text/html")
        assert "429 · Too many requests" in page
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert f"Request id: <code>{headers['X-Request-Id']}</code>" in page
    assert row_count(limited.stack.db_path) == rows + RATE

    async with http.get(f"{first}/") as response:  # reading is not limited
        assert response.status == 200


async def test_the_window_ends_when_retry_after_says(limited: LimitedStack,
                                                     http: aiohttp.ClientSession) -> None:
    limited.reset()
    for n in range(RATE):
        await create_via_api(http, limited.urls[0], "python", f"w = {n}")
    count, seconds_left = limited.counter()
    assert count == RATE and 55 < seconds_left <= 60
    client = redis.Redis.from_url(limited.stack.redis_url)
    try:  # the window's end, without waiting a minute for it
        client.pexpire(KEY_PREFIX + "127.0.0.1", 1500)
    finally:
        client.close()
    async with http.post(f"{limited.urls[0]}/api/snippets",
                         json={"language": "python", "code": "late"}) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] in ("1", "2")
    await until(lambda: limited.counter()[0] == 0, 5, "the window never ended")
    await create_via_api(http, limited.urls[0], "python", "a new window")
    assert limited.counter()[0] == 1


async def test_refused_and_oversized_requests_are_not_counted(
        limited: LimitedStack, http: aiohttp.ClientSession) -> None:
    limited.reset()
    url = limited.urls[0]
    status, _, _ = await post_body(http, f"{url}/api/snippets", b"x" * (BODY_LIMIT + 1),
                                   "application/json")
    assert status == 413
    async with http.post(f"{url}/snippets", data={"language": "python", "plain_code": "x"},
                         headers={"Sec-Fetch-Site": "cross-site"}) as response:
        assert response.status == 403
    assert limited.counter()[0] == 0


async def test_without_redis_the_limit_fails_open(make_stack: MakeStack, tmp_path: Path,
                                                  http: aiohttp.ClientSession) -> None:
    server, port = start_private_valkey(tmp_path / "valkey")
    try:
        stack = make_stack(redis_url=f"redis://127.0.0.1:{port}/0", RATE_LIMIT_PER_MINUTE="1")
        await create_via_api(http, stack.url, "python", "counted")
        async with http.post(f"{stack.url}/api/snippets",
                             json={"language": "python", "code": "limited"}) as response:
            assert response.status == 429
        server.kill()
        server.wait()
        started = time.monotonic()
        for n in range(3):  # over the limit, but nothing can count: let them in
            await create_via_api(http, stack.url, "python", f"redis is down {n}")
        assert time.monotonic() - started < 10
        assert row_count(stack.db_path) == 4
        assert "rate limit not checked for 127.0.0.1, request allowed" in stack.web.log()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
