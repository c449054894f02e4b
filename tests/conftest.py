"""Fixtures that start real servers on free ports: a private Valkey, the stack, a browser."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis
from playwright.async_api import Browser, async_playwright

from snippet_service.valkey import free_port, start_valkey, wait_for_port
from tests.servers import Process, Stack, base_env, python

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Valkey server for the whole run; yields redis://host:port (no db)."""
    port = free_port()
    process = start_valkey(port, tmp_path_factory.mktemp("valkey"), persistent=False)
    yield f"redis://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def fresh_redis_url(valkey: str) -> str:
    """A Valkey database of its own, emptied, so stacks do not see each other's jobs."""
    url = f"{valkey}/{next(_databases) % 16}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="module")
def stack(valkey: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Our highlighter, a worker and the web app, with a temporary SQLite file."""
    running = Stack(fresh_redis_url(valkey), tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()


def run_upstream(module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run ``python -m tests.MODULE PORT`` (a stand-in highlighter); yield its URL."""
    port = free_port()
    process = python(module, ["-m", f"tests.{module}", str(port)], base_env(),
                     tmp_path_factory.mktemp(module))
    wait_for_port(port, 20, process.popen)
    yield f"http://127.0.0.1:{port}/"
    process.stop()


@pytest.fixture(scope="module")
def fake_highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/fake_highlighter.py: refuses one language, answers hostile HTML on request."""
    yield from run_upstream("fake_highlighter", tmp_path_factory)


@pytest.fixture(scope="module")
def fake_stack(valkey: str, fake_highlighter: str,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The worker and web app talking to the fake highlighter."""
    running = Stack(fresh_redis_url(valkey), tmp_path_factory.mktemp("fake-stack"),
                    highlighter_url=fake_highlighter)
    yield running
    running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def row_count(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return int(conn.execute("SELECT count(*) FROM snippets").fetchone()[0])


def queued_jobs(redis_url: str) -> int:
    """Jobs waiting in the queue plus job payloads stored in Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.zcard("snippets:queue")) + len(client.keys("arq:job:*"))
    finally:
        client.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium under Playwright (skipped where it is not installed)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


__all__ = ["Process", "Stack", "row_count", "queued_jobs"]


@pytest.fixture(scope="module")
def flaky_highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/flaky_highlighter.py: an upstream that fails on purpose and logs request times."""
    yield from run_upstream("flaky_highlighter", tmp_path_factory)
