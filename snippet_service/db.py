"""The data layer: a bounded pool of SQLite connections, migrations and snippet queries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite

from snippet_service.config import Config

logger = logging.getLogger("snippet_service.db")

PENDING, HIGHLIGHTED, FAILED = "pending", "highlighted", "failed"
STATUSES = (PENDING, HIGHLIGHTED, FAILED)

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE snippets (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        language TEXT NOT NULL,
        plain_code TEXT NOT NULL,
        highlighted_code TEXT,
        status TEXT NOT NULL DEFAULT 'pending'
            CHECK (status IN ('pending', 'highlighted', 'failed')),
        error TEXT,
        revision INTEGER NOT NULL DEFAULT 1,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE INDEX snippets_status_updated ON snippets (status, updated_at);
    """,
    """
    ALTER TABLE snippets ADD COLUMN highlight_at TEXT;
    ALTER TABLE snippets ADD COLUMN expires_at TEXT;
    ALTER TABLE snippets ADD COLUMN queued_at TEXT;
    CREATE INDEX snippets_expires_at ON snippets (expires_at) WHERE expires_at IS NOT NULL;
    """,
    # Everything lists and status checks read, so they never touch the large columns
    # (the code and the HTML); the queries name it (INDEXED BY) and its exact expression.
    """
    CREATE INDEX snippets_summary ON snippets (id, status, revision, expires_at, language,
        created_at, updated_at, substr(plain_code, 1, 200));
    """,
)


class SnippetNotFound(LookupError):
    """No snippet has this id."""

    def __init__(self, snippet_id: int) -> None:
        super().__init__(f"snippet {snippet_id} not found")
        self.snippet_id = snippet_id


@dataclass(frozen=True)
class Snippet:
    id: int
    language: str
    plain_code: str
    highlighted_code: str | None
    status: str
    error: str | None
    revision: int
    created_at: str
    updated_at: str
    highlight_at: str | None = None
    expires_at: str | None = None
    queued_at: str | None = None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Snippet:
        return cls(**{key: row[key] for key in row.keys()})


def timestamp(moment: datetime) -> str:
    """An ISO 8601 UTC string with milliseconds (these sort as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def utcnow(offset: float = 0.0) -> str:
    """The current time, plus ``offset`` seconds, as a timestamp string."""
    return timestamp(datetime.now(UTC) + timedelta(seconds=offset))


def parse_timestamp(value: str) -> datetime:
    """The datetime of a timestamp string."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Database:
    """A fixed number of SQLite connections shared by coroutines; writes go one at a time."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the connections and bring the schema up to date."""
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(self.size):
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA busy_timeout = 10000")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            self._all.append(conn)
            self._idle.put_nowait(conn)
        await migrate(self)

    async def close(self) -> None:
        """Close every connection."""
        for conn in self._all:
            await conn.close()
        self._all.clear()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        """Borrow a connection for reads; waits while all are in use."""
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def write(self, sql: str, parameters: tuple[Any, ...] = ()) -> aiosqlite.Cursor:
        """One write statement on its own (autocommit; SQLite makes it atomic), one at a time.

        A single statement takes the write lock when it starts, so it waits out other
        writers within busy_timeout, and a cancelled caller cannot leave it half done.
        """
        async with self._write_lock, self.connection() as conn:
            return await asyncio.shield(conn.execute(sql, parameters))

    async def write_returning(
        self, sql: str, parameters: tuple[Any, ...] = ()
    ) -> list[aiosqlite.Row]:
        """One write statement with a RETURNING clause, like :meth:`write`; its rows."""
        async with self._write_lock, self.connection() as conn:
            return list(await asyncio.shield(conn.execute_fetchall(sql, parameters)))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE), committed on success, rolled back otherwise."""
        async with self._write_lock, self.connection() as conn:
            try:
                # Inside the try: a cancelled BEGIN still runs on the connection's thread,
                # and the rollback queued after it closes the transaction it opened.
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await asyncio.shield(conn.commit())
            except BaseException:
                await asyncio.shield(conn.rollback())
                raise


@asynccontextmanager
async def database_ctx(config: Config) -> AsyncIterator[Database]:
    """The process's database pool (DB_POOL_SIZE connections), open for the block."""
    database = Database(config.db_path, config.db_pool_size)
    try:
        await database.open()
        yield database
    finally:
        await database.close()


async def migrate(db: Database) -> None:
    """Apply the migrations this database has not seen yet."""
    async with db.transaction() as conn:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            logger.info("applying migration %d", number)
            for statement in filter(str.strip, script.split(";")):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")


async def create_snippet(
    db: Database,
    language: str,
    plain_code: str,
    highlight_in: float = 0.0,
    expires_in: float | None = None,
) -> Snippet:
    """Store a new pending snippet (highlight no earlier than highlight_in seconds from now)."""
    now = utcnow()
    highlight_at = utcnow(highlight_in) if highlight_in > 0 else None
    expires_at = utcnow(expires_in) if expires_in else None
    cursor = await db.write(
        "INSERT INTO snippets (language, plain_code, status, created_at, updated_at,"
        " highlight_at, expires_at, queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (language, plain_code, PENDING, now, now, highlight_at, expires_at, now),
    )
    snippet_id = cursor.lastrowid
    assert snippet_id is not None
    return Snippet(snippet_id, language, plain_code, None, PENDING, None, 1, now, now,
                   highlight_at, expires_at, now)


async def get_snippet(db: Database, snippet_id: int) -> Snippet:
    """Return one unexpired snippet or raise SnippetNotFound."""
    async with db.connection() as conn:
        rows = await conn.execute_fetchall(
            "SELECT * FROM snippets WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (snippet_id, utcnow()),
        )
    for row in rows:
        return Snippet.from_row(row)
    raise SnippetNotFound(snippet_id)


EXCERPT_CHARS = 200  # what a list shows of the code; the 200 in snippets_summary


@dataclass(frozen=True)
class SnippetSummary:
    """What a list of snippets shows: never the whole code or the highlighted HTML."""

    id: int
    language: str
    status: str
    excerpt: str  # the first EXCERPT_CHARS characters of the code
    created_at: str
    updated_at: str


async def recent_summaries(db: Database, limit: int = 20) -> list[SnippetSummary]:
    """The newest unexpired snippets first, as list rows (a short excerpt of the code)."""
    async with db.connection() as conn:
        rows = await conn.execute_fetchall(
            f"SELECT id, language, status, substr(plain_code, 1, {EXCERPT_CHARS}), created_at,"
            " updated_at FROM snippets INDEXED BY snippets_summary"
            " WHERE expires_at IS NULL OR expires_at > ? ORDER BY id DESC LIMIT ?",
            (utcnow(), limit),
        )
    return [SnippetSummary(*row) for row in rows]


async def snippet_status(db: Database, snippet_id: int) -> tuple[str, int] | None:
    """The (status, revision) of one unexpired snippet, or None; never reads its code."""
    async with db.connection() as conn:
        rows = await conn.execute_fetchall(
            "SELECT status, revision FROM snippets INDEXED BY snippets_summary"
            " WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (snippet_id, utcnow()),
        )
    for row in rows:
        return str(row[0]), int(row[1])
    return None


async def count_snippets(db: Database) -> int:
    """How many snippets are stored."""
    async with db.connection() as conn:
        async with conn.execute("SELECT count(*) FROM snippets") as cursor:
            row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _finish(db: Database, snippet_id: int, revision: int, **values: Any) -> bool:
    columns = ", ".join(f"{name} = ?" for name in values)
    cursor = await db.write(
        f"UPDATE snippets SET {columns}, updated_at = ?"
        " WHERE id = ? AND revision = ? AND status = ?",
        (*values.values(), utcnow(), snippet_id, revision, PENDING),
    )
    return cursor.rowcount == 1


async def mark_highlighted(db: Database, snippet_id: int, revision: int, html: str) -> bool:
    """Store the highlighted HTML of a pending revision; False if it was already finished."""
    return await _finish(
        db, snippet_id, revision, highlighted_code=html, status=HIGHLIGHTED, error=None
    )


async def mark_failed(db: Database, snippet_id: int, revision: int, error: str) -> bool:
    """Record why a pending revision could not be highlighted; False if already finished."""
    return await _finish(db, snippet_id, revision, status=FAILED, error=error)


async def rehighlight(db: Database, snippet_id: int, language: str | None = None) -> Snippet:
    """Start a new revision: pending again (optionally in another language)."""
    now = utcnow()
    cursor = await db.write(
        "UPDATE snippets SET language = coalesce(?, language), status = ?,"
        " highlighted_code = NULL, error = NULL, revision = revision + 1, updated_at = ?,"
        " highlight_at = NULL, queued_at = ?"
        " WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
        (language, PENDING, now, now, snippet_id, now),
    )
    if cursor.rowcount != 1:
        raise SnippetNotFound(snippet_id)
    return await get_snippet(db, snippet_id)


async def delete_snippet(db: Database, snippet_id: int) -> bool:
    """Delete a snippet; False if it was already gone."""
    cursor = await db.write("DELETE FROM snippets WHERE id = ?", (snippet_id,))
    return cursor.rowcount == 1


async def purge_expired(db: Database) -> int:
    """Delete every expired snippet; return how many."""
    cursor = await db.write(
        "DELETE FROM snippets WHERE expires_at IS NOT NULL AND expires_at <= ?", (utcnow(),)
    )
    return cursor.rowcount


async def stale_pending(db: Database, older_than: float, limit: int = 500) -> list[Snippet]:
    """Pending snippets last enqueued more than ``older_than`` seconds ago."""
    async with db.connection() as conn:
        rows = await conn.execute_fetchall(
            "SELECT * FROM snippets WHERE status = ? AND coalesce(queued_at, updated_at) <= ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?",
            (PENDING, utcnow(-older_than), utcnow(), limit),
        )
    return [Snippet.from_row(row) for row in rows]


async def mark_queued(db: Database, snippet_ids: list[int]) -> None:
    """Note that these snippets' jobs were (re-)enqueued just now."""
    if not snippet_ids:
        return
    async with db.transaction() as conn:
        await conn.executemany(
            "UPDATE snippets SET queued_at = ? WHERE id = ?",
            [(utcnow(), snippet_id) for snippet_id in snippet_ids],
        )


async def ping(db: Database) -> None:
    """Raise if SQLite cannot answer a query."""
    async with db.connection() as conn:
        await conn.execute("SELECT 1")
