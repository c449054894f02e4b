"""The SQLite backend of the data layer (the default): a bounded pool of connections (WAL,
one writer at a time) and the versioned migrations it applies when it opens."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from snippet_service import backend

logger = logging.getLogger("snippet_service.sqlite")

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
    # Public ids (a snippet made before keeps its number as its id, as does one a process
    # of an earlier version inserts while it is still running), titles, visibility,
    # owners, forks, burn after reading, detected languages and the terminal colouring.
    # Only public snippets are listed: the list's index holds just them.
    """
    ALTER TABLE snippets ADD COLUMN slug TEXT;
    UPDATE snippets SET slug = CAST(id AS TEXT);
    CREATE UNIQUE INDEX snippets_slug ON snippets (slug);
    CREATE INDEX snippets_state ON snippets (slug, status, revision, expires_at);
    ALTER TABLE snippets ADD COLUMN title TEXT;
    ALTER TABLE snippets ADD COLUMN visibility TEXT NOT NULL DEFAULT 'unlisted'
        CHECK (visibility IN ('unlisted', 'public'));
    ALTER TABLE snippets ADD COLUMN owner_hash TEXT;
    ALTER TABLE snippets ADD COLUMN parent_id TEXT;
    ALTER TABLE snippets ADD COLUMN burn_after_reading INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE snippets ADD COLUMN detected INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE snippets ADD COLUMN ansi_code TEXT;
    ALTER TABLE snippets ADD COLUMN ansi_revision INTEGER;
    DROP INDEX snippets_summary;
    CREATE INDEX snippets_public ON snippets (id, slug, title, status, expires_at, language,
        created_at, updated_at, substr(plain_code, 1, 200)) WHERE visibility = 'public';
    CREATE TRIGGER snippets_number_id AFTER INSERT ON snippets WHEN NEW.slug IS NULL
        BEGIN UPDATE snippets SET slug = CAST(NEW.id AS TEXT) WHERE id = NEW.id; END;
    """,
)



def _stored(parameters: Sequence[Any]) -> tuple[Any, ...]:
    """The parameters with their datetimes as the text SQLite stores."""
    return tuple(backend.timestamp(value) if isinstance(value, datetime) else value
                 for value in parameters)


class Database(backend.Database):
    """A fixed number of SQLite connections shared by coroutines; writes go one at a time."""

    name = "sqlite"
    # The public list and the status checks name the indexes that hold everything they
    # read (migration 4), so neither reads a row's code or HTML.
    summary_index = " INDEXED BY snippets_public"
    state_index = " INDEXED BY snippets_state"

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the connections and bring the schema up to date.

        Each connection has a thread of its own, which answers through the event loop: a
        caller cancelled meanwhile (a signal while the process starts) waits for the
        opening to end and closes what it opened, so no thread outlives the loop."""
        opening = asyncio.ensure_future(self._open())
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            await asyncio.wait({opening})
            await self.close()
            raise

    async def _open(self) -> None:
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        for number in range(self.size):
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            self._all.append(conn)
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA busy_timeout = 10000")
            if number == 0:  # kept in the file: once is enough
                await _use_wal(conn)
            await conn.execute("PRAGMA synchronous = NORMAL")
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

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[backend.Row]:
        """The rows of one query."""
        async with self.connection() as conn:
            return list(await conn.execute_fetchall(sql, _stored(parameters)))

    async def write(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """One write statement on its own (autocommit; SQLite makes it atomic), one at a
        time; how many rows it changed.

        A single statement takes the write lock when it starts, so it waits out other
        writers within busy_timeout, and a cancelled caller cannot leave it half done.
        """
        async with self._write_lock, self.connection() as conn:
            cursor = await asyncio.shield(conn.execute(sql, _stored(parameters)))
            return cursor.rowcount

    async def write_returning(
        self, sql: str, parameters: Sequence[Any] = ()
    ) -> list[backend.Row]:
        """One write statement with a RETURNING clause, like :meth:`write`; its rows."""
        async with self._write_lock, self.connection() as conn:
            return list(await asyncio.shield(conn.execute_fetchall(sql, _stored(parameters))))

    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One write statement for each parameter row, in one transaction."""
        async with self.transaction() as conn:
            await conn.executemany(sql, [_stored(row) for row in rows])

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


async def _use_wal(conn: aiosqlite.Connection, wait: float = 10.0) -> None:
    """Switch the file to WAL. SQLite answers "database is locked" at once, without its
    busy handler, while another process opens the same new file: try again for a while."""
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except aiosqlite.OperationalError as exc:
            if "locked" not in str(exc) or asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def migrate(db: Database) -> None:
    """Apply the migrations this database has not seen yet."""
    async with db.transaction() as conn:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            logger.info("applying migration %d", number)
            # statements end a line with ";" (a trigger's body has its own ";" inside)
            for statement in filter(str.strip, re.split(r";[ \t]*\n", script)):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
