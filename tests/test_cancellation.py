"""A request cancelled mid-flight never leaves a transaction open, on either backend:
afterwards every pooled connection still writes, another process can take SQLite's write
lock at once, and no PostgreSQL session is left idle in a transaction."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from snippet_service import db
from snippet_service.config import Config
from snippet_service.web.app import create_app
from tests.conftest import fresh_redis_url
from tests.databases import TestDatabase, from_env, row_count, transaction_open
from tests.helpers import create_via_api, until
from tests.servers import Stack

POOL_SIZE = 5
pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL


async def settled(database: TestDatabase) -> None:
    """Wait until the server is done with the requests cut short: the row count holds
    still from one look to the next and nobody holds the write lock."""
    counts: list[int] = []

    def still() -> bool:
        counts.append(row_count(database))
        if len(counts) < 2 or counts[-1] != counts[-2]:
            return False
        return not transaction_open(database)

    await until(still, 10, "the server kept writing", interval=0.2)


async def test_cancelled_writes_leave_no_transaction_open(db_env: dict[str, str]) -> None:
    database = db.connect(Config.from_env({**db_env, "DB_POOL_SIZE": str(POOL_SIZE)}))
    await database.open()
    rng = random.Random(1)
    try:
        for round_ in range(40):  # cancel at every stage: queued, BEGIN, INSERT, COMMIT
            tasks = [asyncio.create_task(db.create_snippet(database, "python", "x"))
                     for _ in range(20)]
            tasks += [asyncio.create_task(db.mark_queued(database, ["1", "2", "3", str(round_)]))
                      for _ in range(5)]  # a transaction of several statements
            tasks += [asyncio.create_task(db.public_summaries(database)) for _ in range(5)]
            await asyncio.sleep(rng.random() * 0.005)  # a random moment to cancel at
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for n in range(3 * POOL_SIZE):  # the pool hands out every connection in turn
            await asyncio.wait_for(db.create_snippet(database, "python", f"after {n}"), 5)
        assert not transaction_open(from_env(db_env))
    finally:
        await database.close()


@pytest.fixture
async def in_process_app(stack: Stack, valkey: str, db_env: dict[str, str]
                         ) -> AsyncIterator[tuple[TestServer, TestDatabase]]:
    """The real app in this process, under aiohttp's test server, which (unlike run_app's
    default) cancels a handler when its client disconnects."""
    config = Config.from_env({
        "REDIS_URL": fresh_redis_url(valkey), **db_env,
        "HIGHLIGHTER_URL": stack.highlighter_url, "DB_POOL_SIZE": str(POOL_SIZE),
        "RATE_LIMIT_PER_MINUTE": "0"})
    server = TestServer(create_app(config))
    await server.start_server()
    try:
        yield server, from_env(db_env)
    finally:
        await server.close()


@pytest.mark.timeout(120)
# aiohttp-jinja2 1.6 (the latest) keeps its context under a string request key; ours are
# web.RequestKey. Only that module's warning is let through.
@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning:aiohttp_jinja2")
async def test_requests_cancelled_by_disconnecting_clients(
        in_process_app: tuple[TestServer, TestDatabase],
        caplog: pytest.LogCaptureFixture) -> None:
    server, database = in_process_app
    url = str(server.make_url("/api/snippets"))
    rng = random.Random(2)
    attempted = 0
    caplog.set_level(logging.WARNING)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def create(n: int) -> int:
            async with session.post(url, json={"language": "python", "code": f"c = {n}"}) as r:
                await r.read()
                return r.status

        for _ in range(25):
            tasks = [asyncio.create_task(create(n)) for n in range(40)]
            attempted += len(tasks)
            await asyncio.sleep(rng.random() * 0.03)  # a random moment to hang up at
            for task in tasks:
                task.cancel()  # the client hangs up; the server cancels the handler
            await asyncio.gather(*tasks, return_exceptions=True)
        await settled(database)
        stored = row_count(database)
        assert stored < attempted  # requests were cut short
        assert not transaction_open(database)
        statuses = await asyncio.gather(*(create(n) for n in range(3 * POOL_SIZE)))
    assert statuses == [201] * (3 * POOL_SIZE)
    assert row_count(database) == stored + 3 * POOL_SIZE
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_clients_hanging_up_on_the_real_server(stack: Stack,
                                                     http: aiohttp.ClientSession) -> None:
    """run_web.py lets handlers finish when clients leave; they must leave nothing behind."""
    rows = row_count(stack.database)
    body = b'{"language": "python", "code": "hung up"}'

    def hang_up(sent: int) -> None:
        with socket.create_connection(("127.0.0.1", stack.port)) as sock:
            sock.sendall(b"POST /api/snippets HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body[:sent])

    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, hang_up, sent % (len(body) + 1))
                           for sent in range(200)))
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def create(n: int) -> None:
            async with session.post(f"{stack.url}/api/snippets",
                                    json={"language": "python", "code": f"gone {n}"}):
                pass

        tasks = [asyncio.create_task(create(n)) for n in range(200)]
        await asyncio.sleep(0.02)  # the moment to hang up at: requests are mid-flight
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await settled(stack.database)
    created = await create_via_api(http, stack.url, "python", "still writing")
    assert row_count(stack.database) >= rows + 1  # (hang-ups after a whole body are stored)
    assert created["status"] == "pending"
    log = stack.web.log()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
