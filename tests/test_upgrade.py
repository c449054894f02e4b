"""Upgrading a database made before random ids (migration 4), on SQLite and PostgreSQL:
old snippets keep their numbers as their ids, unlisted and ownerless; a process of the
earlier version still inserting rows gets the same; new snippets get random ids."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from snippet_service import db, sqlite
from snippet_service import postgres as pg_backend
from snippet_service.backend import Database
from tests.postgres import PrivatePostgres
from tests.postgres import query as pg_query

OLD_ROW = ("INSERT INTO snippets (language, plain_code, status, created_at, updated_at)"
           " VALUES ('python', {code}, 'highlighted', {now}, {now})")


async def check(database: Database, insert_as_before: str) -> None:
    old = await db.get_snippet(database, "1")
    assert (old.id, old.plain_code, old.visibility, old.owner_hash) == (
        "1", "made before", "unlisted", None)
    assert not old.burn_after_reading and not old.detected
    await database.write(insert_as_before)
    assert (await db.get_snippet(database, "2")).plain_code == "inserted as before"
    new = await db.create_snippet(database, "python", "made after")
    assert db.ID_PATTERN.fullmatch(new.id) and not new.id.isdigit()
    assert (await db.get_snippet(database, new.id)).plain_code == "made after"
    assert await db.public_summaries(database) == []


async def test_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for script in sqlite.MIGRATIONS[:3]:
            conn.executescript(script)
        conn.execute("PRAGMA user_version = 3")
        conn.execute(OLD_ROW.format(code="'made before'", now="'2026-01-01 00:00:00.000'"))
    database = sqlite.Database(path, 2)
    await database.open()
    try:
        await check(database, OLD_ROW.format(code="'inserted as before'",
                                             now="'2026-02-01 00:00:00.000'"))
    finally:
        await database.close()


async def test_postgres(postgres: PrivatePostgres) -> None:
    url = postgres.create_database()
    pg_query(url, "CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for number, script in enumerate(pg_backend.MIGRATIONS[:3], start=1):
        pg_query(url, script)
        pg_query(url, f"INSERT INTO schema_version (version) VALUES ({number})")
    pg_query(url, OLD_ROW.format(code="'made before'", now="now()"))
    database = pg_backend.Database(url, 2)
    await database.open()
    try:
        await check(database, OLD_ROW.format(code="'inserted as before'", now="now()"))
    finally:
        await database.close()
