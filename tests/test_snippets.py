"""The snippet's life (snippet_service.snippets) against a real database (SQLite and
PostgreSQL) and a real Valkey, and the data layer's times: aware UTC datetimes in, the same
stored text (SQLite) or timestamptz (PostgreSQL) and API text out."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from redis.asyncio.client import PubSub

from snippet_service import bulk, db, snippets, sqlite
from snippet_service import postgres as pg
from snippet_service.config import Config, ConfigError
from snippet_service.queue import DONE_CHANNEL, EXPIRE_JOB, HIGHLIGHT_JOB, open_pool
from snippet_service.valkey import free_port
from snippet_service.web.api import json_time
from tests import databases
from tests.conftest import fresh_redis_url
from tests.helpers import until
from tests.postgres import PrivatePostgres, query

STORED_TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@dataclass
class World:
    database: db.Database
    redis: ArqRedis
    queue: str
    done: PubSub

    async def queued(self) -> dict[str, float]:
        """Job id → score (ms) of every job in the queue."""
        return {job_id.decode(): score for job_id, score in
                await self.redis.zrange(self.queue, 0, -1, withscores=True)}

    async def payload(self, job_id: str) -> dict[str, object]:
        raw = await self.redis.get(job_key_prefix + job_id)
        assert raw is not None, job_id
        data: dict[str, object] = json.loads(raw)
        return data

    async def announced(self, timeout: float = 5.0) -> list[str]:
        """Snippet ids published on the done channel, waiting up to ``timeout`` for one."""
        deadline = time.monotonic() + timeout
        while True:
            message = await self.done.get_message(ignore_subscribe_messages=True,
                                                  timeout=max(0.0, deadline - time.monotonic()))
            if message is not None:
                return str(message["data"].decode()).split(",")
            assert time.monotonic() < deadline, "nothing was announced"


@pytest.fixture
async def world(valkey: str, backend: str, db_env: dict[str, str]) -> AsyncIterator[World]:
    """A database of the test's backend (SQLite, then PostgreSQL) and a Valkey database."""
    config = Config.from_env({"REDIS_URL": fresh_redis_url(valkey), **db_env})
    async with db.database_ctx(config) as database:
        redis = await open_pool(config)
        done = redis.pubsub()
        await done.subscribe(DONE_CHANNEL)
        try:
            yield World(database, redis, config.queue_name, done)
        finally:
            await done.aclose()  # type: ignore[no-untyped-call]
            await redis.aclose(close_connection_pool=True)


# --- times are datetimes --------------------------------------------------------------

def assert_aware_utc(*moments: datetime | None) -> None:
    for moment in moments:
        assert isinstance(moment, datetime)
        assert moment.utcoffset() == timedelta(0)
        assert moment.microsecond % 1000 == 0  # what the stored text keeps


TIME_COLUMNS = ("created_at", "updated_at", "highlight_at", "expires_at", "queued_at")


def stored_times(stored: databases.TestDatabase, snippet_id: str) -> dict[str, object]:
    (row,) = stored.query(f"SELECT {', '.join(TIME_COLUMNS)} FROM snippets WHERE slug = ?",
                          (snippet_id,))
    return dict(zip(TIME_COLUMNS, row, strict=True))


async def test_snippet_times_are_aware_datetimes_and_round_trip(
        backend: str, db_env: dict[str, str]) -> None:
    database = db.connect(Config.from_env(db_env))
    await database.open()
    try:
        before = datetime.now(UTC) - timedelta(milliseconds=1)
        one = await db.create_snippet(database, "python", "a = 1", highlight_in=30,
                                      expires_in=3600)
        drafts = [bulk.Draft("python", "b = 2", visibility=db.PUBLIC),
                  bulk.Draft("text", "c", 5.5, 60)]
        two, three = await bulk.create_snippets(database, drafts)
        assert_aware_utc(one.created_at, one.updated_at, one.highlight_at, one.expires_at,
                         one.queued_at, three.highlight_at, three.expires_at)
        assert two.highlight_at is None and two.expires_at is None
        assert before <= one.created_at <= datetime.now(UTC)
        assert one.highlight_at == one.created_at + timedelta(seconds=30)
        assert three.highlight_at == three.created_at + timedelta(seconds=5.5)
        # what create returns is what is read back, by one id or many
        assert await db.get_snippet(database, one.id) == one
        assert await bulk.get_snippets(database, [two.id, three.id]) == {two.id: two,
                                                                          three.id: three}
        (summary,) = await db.public_summaries(database)  # the one public snippet
        assert (summary.id, summary.created_at, summary.updated_at) == (
            two.id, two.created_at, two.updated_at)
        again = await db.rehighlight(database, one.id)
        assert_aware_utc(again.updated_at, again.queued_at)
        assert again.created_at == one.created_at and again.highlight_at is None
        assert again.updated_at >= one.updated_at
        stale = await db.stale_pending(database, -60)  # every pending snippet
        assert stale == [again, two, three]
    finally:
        await database.close()
    stored = stored_times(databases.from_env(db_env), one.id)
    if backend == "postgres":  # timestamptz: the same instants
        assert stored == {column: getattr(again, column) for column in TIME_COLUMNS}
        return
    # stored as before: ISO 8601 UTC text with milliseconds and "Z" (the index sorts it)
    for value in stored.values():
        assert value is None or re.fullmatch(STORED_TIME, str(value)), value
    assert db.parse_timestamp(str(stored["expires_at"])) == one.expires_at


async def test_rows_written_elsewhere_read_back_as_datetimes(tmp_path: Path) -> None:
    database = sqlite.Database(tmp_path / "old.db", 1)
    await database.open()
    try:
        with sqlite3.connect(database.path) as conn:  # a row as an older version stored it
            (ident,) = conn.execute(
                "INSERT INTO snippets (language, plain_code, status, created_at, updated_at)"
                " VALUES ('python', 'x', 'pending', '2024-02-29T23:59:59.999Z',"
                " '2024-03-01T00:00:00.000Z') RETURNING id").fetchone()
            # its number became its id when the table gained public ids
            conn.execute("UPDATE snippets SET slug = CAST(id AS TEXT) WHERE id = ?", (ident,))
        snippet = await db.get_snippet(database, str(ident))
    finally:
        await database.close()
    assert snippet.created_at == datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC)
    assert snippet.updated_at == datetime(2024, 3, 1, tzinfo=UTC)
    assert snippet.highlight_at is None and snippet.expires_at is None
    assert snippet.queued_at is None


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC), "2024-02-29T23:59:59.999Z"),
    (datetime(2024, 1, 1, tzinfo=UTC), "2024-01-01T00:00:00.000Z"),
    (datetime(2024, 1, 1, 2, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
     "2024-01-01T00:00:00.123Z"),
    (None, None),
])
def test_the_api_writes_times_as_before(moment: datetime | None, text: str | None) -> None:
    assert json_time(moment) == text
    if moment is not None:
        assert db.timestamp(moment) == text  # the same text as stored (and as before)



# --- the snippet's life -----------------------------------------------------------------

async def test_intake_stores_and_enqueues_each_snippets_jobs(world: World) -> None:
    intake = snippets.Intake(world.database, world.redis, world.queue)
    try:
        plain, deferred, expiring = await asyncio.gather(
            intake.create(bulk.Draft("python", "plain = 1")),
            intake.create(bulk.Draft("python", "later = 1", highlight_in=60)),
            intake.create(bulk.Draft("python", "bye = 1", expires_in=600)),
        )
    finally:
        await intake.close()
    stored = await world.database.fetch("SELECT slug FROM snippets ORDER BY id")
    assert [row[0] for row in stored] == [plain.id, deferred.id, expiring.id]  # in order
    for snippet in (plain, deferred, expiring):
        assert await db.get_snippet(world.database, snippet.id) == snippet
        assert snippet.status == db.PENDING and snippet.revision == 1
    queued = await world.queued()
    assert set(queued) == {f"highlight:{plain.id}:1", f"highlight:{deferred.id}:1",
                           f"highlight:{expiring.id}:1", f"expire:{expiring.id}"}
    assert deferred.highlight_at is not None and expiring.expires_at is not None
    assert queued[f"highlight:{deferred.id}:1"] == deferred.highlight_at.timestamp() * 1000
    assert queued[f"expire:{expiring.id}"] == expiring.expires_at.timestamp() * 1000
    payload = await world.payload(f"highlight:{plain.id}:1")
    assert (payload["f"], payload["a"]) == (HIGHLIGHT_JOB, [plain.id])
    payload = await world.payload(f"expire:{expiring.id}")
    assert (payload["f"], payload["a"]) == (EXPIRE_JOB, [expiring.id])


async def test_intake_keeps_the_snippet_when_redis_is_down(world: World) -> None:
    gone = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    intake = snippets.Intake(world.database, gone, world.queue)
    try:
        snippet = await intake.create(bulk.Draft("python", "kept = 1"))
    finally:
        await intake.close()
        await gone.aclose()
    assert (await db.get_snippet(world.database, snippet.id)).status == db.PENDING
    # the reconciler's pass enqueues it once Redis answers
    assert await snippets.requeue_lost(world.database, world.redis, older_than=0) == 1
    assert set(await world.queued()) == {f"highlight:{snippet.id}:1"}
    assert await snippets.requeue_lost(world.database, world.redis, older_than=0) == 0


async def test_requeue_lost_keeps_a_deferred_highlight_deferred(world: World) -> None:
    snippet = await db.create_snippet(world.database, "python", "x", highlight_in=3600)
    assert snippet.highlight_at is not None
    assert await snippets.requeue_lost(world.database, world.redis, older_than=0) == 1
    score = (await world.queued())[f"highlight:{snippet.id}:1"]
    assert score == snippet.highlight_at.timestamp() * 1000


async def test_rehighlight_makes_a_new_revision_and_job_and_announces_it(
        world: World) -> None:
    created = await db.create_snippet(world.database, "python", "def f(): pass")
    assert await db.mark_highlighted(world.database, created.id, 1, "<pre>html</pre>")
    again = await snippets.rehighlight(world.database, world.redis, created.id, "text")
    assert (again.revision, again.language, again.status) == (2, "text", db.PENDING)
    assert again.highlighted_code is None
    assert await world.announced() == [str(created.id)]
    assert f"highlight:{created.id}:2" in await world.queued()
    with pytest.raises(db.SnippetNotFound):
        await snippets.rehighlight(world.database, world.redis, "no-such-one")


async def test_rehighlight_with_redis_down_leaves_it_pending(world: World) -> None:
    created = await db.create_snippet(world.database, "python", "y = 2")
    gone = ArqRedis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    try:
        again = await snippets.rehighlight(world.database, gone, created.id)
    finally:
        await gone.aclose()
    assert (again.revision, again.status) == (2, db.PENDING)


async def test_fail_marks_a_pending_revision_failed_and_announces_it(world: World) -> None:
    created = await db.create_snippet(world.database, "python", "z = 3")
    assert await snippets.fail(world.database, world.redis, created.id, 1, "no luck")
    assert await world.announced() == [str(created.id)]
    failed = await db.get_snippet(world.database, created.id)
    assert (failed.status, failed.error) == (db.FAILED, "no luck")
    assert not await snippets.fail(world.database, world.redis, created.id, 1, "again")
    assert (await db.get_snippet(world.database, created.id)).error == "no luck"

    # None: the current revision; an old revision is left alone
    await snippets.rehighlight(world.database, world.redis, created.id)
    assert await world.announced() == [str(created.id)]
    assert not await snippets.fail(world.database, world.redis, created.id, 1, "stale")
    assert await snippets.fail(world.database, world.redis, created.id, None, "current")
    assert (await db.get_snippet(world.database, created.id)).error == "current"
    assert not await snippets.fail(world.database, world.redis, "no-such-one", None,
                                   "missing")


async def test_delete_and_expire_remove_snippets(world: World) -> None:
    kept = await db.create_snippet(world.database, "python", "kept")
    doomed = await db.create_snippet(world.database, "python", "doomed")
    expired = await db.create_snippet(world.database, "python", "old", expires_in=0.001)
    assert await snippets.delete(world.database, world.redis, doomed.id)
    assert await world.announced() == [str(doomed.id)]
    assert not await snippets.delete(world.database, world.redis, doomed.id)
    with pytest.raises(db.SnippetNotFound):
        await db.get_snippet(world.database, doomed.id)

    assert expired.expires_at is not None
    expires_at = expired.expires_at
    await until(lambda: db.utcnow() > expires_at, 5, "the snippet never expired")
    assert await snippets.expire_overdue(world.database) == 1
    assert await snippets.expire_overdue(world.database) == 0
    assert await db.count_snippets(world.database) == 1
    assert (await db.get_snippet(world.database, kept.id)).plain_code == "kept"


# --- PostgreSQL ------------------------------------------------------------------------

async def test_processes_starting_together_migrate_once(postgres: PrivatePostgres) -> None:
    """Migrations run under an advisory lock: processes opening a new database at once
    take turns, and each migration is applied once."""
    url = postgres.create_database()
    opened = [pg.Database(url, 1) for _ in range(4)]
    try:
        await asyncio.gather(*(database.open() for database in opened))
        await db.create_snippet(opened[0], "python", "ok")
        assert await db.count_snippets(opened[-1]) == 1
    finally:
        await asyncio.gather(*(database.close() for database in opened))
    versions = query(url, "SELECT version FROM schema_version ORDER BY version")
    assert versions == [(n,) for n in range(1, len(pg.MIGRATIONS) + 1)]


def test_database_url_is_checked_and_its_password_never_shown() -> None:
    config = Config.from_env({"DATABASE_URL": "postgres://app:s3cret@db.example:5432/snippets"})
    assert db.connect(config).name == "postgresql"
    assert "s3cret" not in repr(config) and "s3cret" not in repr(db.connect(config))
    assert db.connect(Config.from_env({})).name == "sqlite"
    with pytest.raises(ConfigError, match="DATABASE_URL") as raised:
        Config.from_env({"DATABASE_URL": "mysql://app:s3cret@db.example/snippets"})
    assert "s3cret" not in str(raised.value)
