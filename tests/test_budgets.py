"""Byte budgets per client (a minute and a day) and the disk space floor: refused with a
clear 429 (or 507 while disk space is low) before anything is stored, and reported by
``/healthz`` in plain states."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from snippet_service.web.hits import BYTES_PREFIX, DAY_PREFIX, KEY_PREFIX
from tests.conftest import MakeStack, row_count
from tests.helpers import post_form, until
from tests.servers import Stack, start_private_valkey
from tests.test_limits import post_body

PER_MINUTE = 100_000
PER_DAY = 150_000
CLIENT = "127.0.0.1"


@pytest.fixture
def budget_stack(make_stack: MakeStack) -> Stack:
    return make_stack(shared=True, RATE_LIMIT_BYTES_PER_MINUTE=str(PER_MINUTE),
                      DAILY_BYTES_PER_CLIENT=str(PER_DAY))


@pytest.fixture
def counters(budget_stack: Stack) -> Iterator[redis.Redis]:
    """The stack's Redis with this client's counters cleared."""
    client = redis.Redis.from_url(budget_stack.redis_url)
    for key in client.scan_iter(KEY_PREFIX + "*"):
        client.delete(key)
    yield client
    client.close()


def spent(client: redis.Redis, prefix: str) -> int:
    return int(client.get(prefix + CLIENT) or 0)


def api_body(size: int) -> bytes:
    """A valid POST /api/snippets body of exactly ``size`` bytes."""
    empty = json.dumps({"language": "python", "code": ""}).encode()
    body = json.dumps({"language": "python", "code": "#" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


async def post_api(http: aiohttp.ClientSession, stack: Stack, size: int) -> tuple[int, str,
                                                                                   dict[str, str]]:
    status, text, headers = await post_body(http, f"{stack.url}/api/snippets", api_body(size),
                                            "application/json")
    return status, text, dict(headers)


async def test_bytes_a_minute_are_limited_with_a_429_and_retry_after(
        budget_stack: Stack, counters: redis.Redis, http: aiohttp.ClientSession) -> None:
    rows = row_count(budget_stack.db_path)
    for _ in range(2):
        status, text, _ = await post_api(http, budget_stack, 40_000)
        assert status == 201, text
    assert spent(counters, BYTES_PREFIX) == 80_000

    status, text, headers = await post_api(http, budget_stack, 40_000)
    assert status == 429
    error = json.loads(text)
    assert error["status"] == 429
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert error["error"] == ("Too much code from your address (the limit is 97.7 KiB a"
                              f" minute). Try again in {retry_after} seconds.")
    status, page, page_headers = await post_form(
        http, budget_stack.url, {"language": "python", "plain_code": "#" * 40_000})
    assert status == 429 and "Too much code from your address" in page
    assert page_headers["Content-Type"].startswith("text/html")
    assert spent(counters, BYTES_PREFIX) == 80_000  # refused requests spend nothing
    assert row_count(budget_stack.db_path) == rows + 2

    status, text, _ = await post_api(http, budget_stack, 20_000)  # what is left still fits
    assert status == 201, text
    assert spent(counters, BYTES_PREFIX) == spent(counters, DAY_PREFIX) == 100_000


async def test_the_daily_budget_refuses_with_a_clear_429_once_spent(
        budget_stack: Stack, counters: redis.Redis, http: aiohttp.ClientSession) -> None:
    rows = row_count(budget_stack.db_path)
    for _ in range(3):
        status, text, _ = await post_api(http, budget_stack, 50_000)
        assert status == 201, text
        counters.delete(BYTES_PREFIX + CLIENT)  # a minute passes
    assert spent(counters, DAY_PREFIX) == PER_DAY
    day_left = counters.pttl(DAY_PREFIX + CLIENT) / 1000
    assert 86_000 < day_left <= 86_400

    status, text, headers = await post_api(http, budget_stack, 1_000)
    assert status == 429
    assert 86_000 < int(headers["Retry-After"]) <= 86_400
    assert json.loads(text)["error"] == ("Your address has used its daily budget for new"
                                         " snippets (146.5 KiB a day). Try again in 24 hours.")
    status, page, _ = await post_form(http, budget_stack.url,
                                      {"language": "python", "plain_code": "x = 1"})
    assert status == 429 and "daily budget" in page
    assert row_count(budget_stack.db_path) == rows + 3


async def chunks(body: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start:start + size]
        await asyncio.sleep(0)  # not a wait: each chunk goes out on its own


async def test_a_chunked_body_is_counted_once_read(
        budget_stack: Stack, counters: redis.Redis, http: aiohttp.ClientSession) -> None:
    for expected in (201, 429):
        async with http.post(f"{budget_stack.url}/api/snippets", data=chunks(api_body(60_000)),
                             headers={"Content-Type": "application/json"}) as response:
            assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
            assert response.status == expected, await response.text()
    assert spent(counters, BYTES_PREFIX) == 60_000


async def test_a_declared_body_past_the_budget_is_refused_before_it_is_sent(
        budget_stack: Stack, counters: redis.Redis, http: aiohttp.ClientSession) -> None:
    status, text, _ = await post_api(http, budget_stack, 60_000)
    assert status == 201, text
    reader, writer = await asyncio.open_connection("127.0.0.1", budget_stack.port)
    try:  # the headers announce 60,000 bytes; none of them is ever sent
        writer.write(b"POST /api/snippets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 429"), status_line
    assert spent(counters, BYTES_PREFIX) == 60_000


async def test_health_reports_free_disk_space(budget_stack: Stack,
                                              http: aiohttp.ClientSession) -> None:
    async with http.get(f"{budget_stack.url}/healthz") as response:
        body = await response.json()
    assert body["disk"]["state"] == "ok"
    assert body["disk"]["free_mb"] >= body["disk"]["min_free_mb"] == 100


async def test_low_disk_space_is_503_health_and_507_creation(
        make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    full_disk_stack = make_stack(MIN_FREE_DISK_MB=str(10**12))  # far above any free space
    async with http.get(f"{full_disk_stack.url}/healthz") as response:
        health = await response.json()
    assert response.status == 503
    assert health["status"] == "unhealthy"
    assert health["disk"]["state"] == "low"
    assert 0 <= health["disk"]["free_mb"] < health["disk"]["min_free_mb"] == 10**12

    async with http.post(f"{full_disk_stack.url}/api/snippets",
                         json={"language": "python", "code": "x = 1"}) as response:
        error = await response.json()
    assert response.status == 507
    assert error["status"] == 507 and "low on disk space" in error["error"]
    async with http.post(f"{full_disk_stack.url}/api/snippets/1/highlight") as response:
        assert response.status == 507
    status, page, headers = await post_form(http, full_disk_stack.url,
                                            {"language": "python", "plain_code": "x = 1"})
    assert status == 507
    assert headers["Content-Type"].startswith("text/html")
    assert "507 · Insufficient storage" in page and "low on disk space" in page
    assert row_count(full_disk_stack.db_path) == 0


async def test_health_shows_plain_states_and_logs_the_reason(
        make_stack: MakeStack, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    server, port = start_private_valkey(tmp_path / "valkey")
    try:
        stack = make_stack(redis_url=f"redis://127.0.0.1:{port}/0")
        server.kill()
        server.wait()

        async def unhealthy() -> str | None:
            async with http.get(f"{stack.url}/healthz") as response:
                return await response.text() if response.status == 503 else None

        text = await until(unhealthy, 10, "/healthz never answered 503")
        assert json.loads(text)["checks"] == {"sqlite": "ok", "redis": "unreachable",
                                              "workers": 0}
        assert "Error" not in text and "(" not in text  # no exception repr
        assert "health check: Redis: " in stack.web.log()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
