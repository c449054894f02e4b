"""List pages read only what a list shows: however large the snippets, the index page stays
small and quick, and the web process does not load their code or HTML (on either backend;
that the queries never read the large columns is checked on SQLite, whose authorizer sees
every column a statement reads)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import aiohttp
import psutil
import pytest

from snippet_service import bulk, db
from snippet_service.sqlite import Database
from tests.databases import SqliteFile, TestDatabase, stored_time
from tests.helpers import peak_rss, until
from tests.servers import Stack

MiB = 2**20
BIG_CODE = 500 * 1024  # characters of code per snippet, near MAX_SNIPPET_BYTES
BIG_HTML = 3 * MiB  # of highlighted HTML per snippet


def insert_large_snippets(database: TestDatabase, count: int) -> list[str]:
    """Store ``count`` public highlighted snippets with large code and HTML, as the worker
    would."""
    now = stored_time(database, db.utcnow())
    rows = [(db.new_id(), "python", f"\n\n   \nbig_{n} = 'first line {n}'\n" + "x" * BIG_CODE,
             "<pre>" + "y" * BIG_HTML + "</pre>", "highlighted", now, now, db.PUBLIC)
            for n in range(count)]
    return [database.query(
        "INSERT INTO snippets (slug, language, plain_code, highlighted_code, status, created_at,"
        " updated_at, visibility) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING slug", row)[0][0]
        for row in rows]


@pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL
async def test_the_index_reads_only_what_it_lists(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    ids = insert_large_snippets(stack.database, 20)
    web = psutil.Process(stack.web.pid)
    async with http.get(f"{stack.url}/") as response:  # warm up
        assert response.status == 200
    before = web.memory_info().rss

    async def index() -> str:
        async with http.get(f"{stack.url}/") as response:
            assert response.status == 200
            return await response.text()

    with peak_rss(web.pid) as peak:
        started = time.monotonic()
        pages = await asyncio.gather(*(index() for _ in range(20)))
        took = time.monotonic() - started
    print(f"20 concurrent GET / over 20 snippets of {(BIG_CODE + BIG_HTML) / MiB:.1f} MiB:"
          f" {took * 1000:.0f} ms, web RSS +{(peak[0] - before) / MiB:.1f} MiB,"
          f" page {len(pages[0]) / 1024:.1f} KiB")
    for page in pages:
        assert len(page) < 64 * 1024
        for n, ident in enumerate(ids):
            assert f'href="/snippets/{ident}"' in page
            assert f"big_{n} = &#39;first line {n}&#39;" in page  # its first line that is not blank
        assert "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
            not in page
    # The rows hold 70 MiB of code and HTML: one request loading them would show here.
    assert peak[0] - before < 16 * MiB, f"grew {(peak[0] - before) / MiB:.0f} MiB"
    assert took < 5, f"took {took:.1f} s"


async def test_summaries_and_status_read_no_large_column(tmp_path: Path) -> None:
    database = Database(tmp_path / "lists.db", 1)
    await database.open()
    try:
        (expired,) = await bulk.create_snippets(database, [
            db.Draft("python", "gone = 1", expires_in=0.001, visibility=db.PUBLIC)])
        ids = insert_large_snippets(SqliteFile(database.path), 3)
        assert expired.expires_at is not None
        expires_at = expired.expires_at  # lists and status checks leave it out once past
        await until(lambda: db.utcnow() > expires_at, 5, "the snippet never expired",
                    interval=0.005)
        async with database.connection() as conn:  # the pool's one connection
            await conn.set_authorizer(_forbid_large_columns)
        summaries = await db.public_summaries(database)
        state = await db.snippet_status(database, ids[0])
        missing = await db.snippet_status(database, "no-such-one")
        gone = await db.snippet_status(database, expired.id)
        async with database.connection() as conn:
            await conn.set_authorizer(None)
    finally:
        await database.close()
    assert [summary.id for summary in summaries] == ids[::-1]
    assert all(len(summary.excerpt) == db.EXCERPT_CHARS for summary in summaries)
    assert summaries[0].excerpt.startswith("\n\n   \nbig_2 = 'first line 2'\nxxx")
    assert state == ("highlighted", 1)
    assert missing is None and gone is None


def _forbid_large_columns(action: int, table: str | None, column: str | None,
                          _db: str | None, _trigger: str | None) -> int:
    """An SQLite authorizer that refuses any statement reading snippets.highlighted_code."""
    if action == sqlite3.SQLITE_READ and table == "snippets" and column == "highlighted_code":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK
