"""What a test reads and writes behind the app's back, on either backend: a stack's or a
test's database as ``SqliteFile`` or ``PostgresDatabase``, with plain (blocking) calls
and the data layer's ``?`` placeholders."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from snippet_service.backend import timestamp
from tests import postgres


class SqliteFile:
    """The SQLite file of a stack or test."""

    backend = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (committed at once)."""
        with sqlite3.connect(self.path, timeout=10) as conn:
            return [tuple(row) for row in conn.execute(sql, tuple(parameters)).fetchall()]

    def script(self, sql: str) -> None:
        """Several statements."""
        with sqlite3.connect(self.path, timeout=10) as conn:
            conn.executescript(sql)


class PostgresDatabase:
    """A database on the tests' private PostgreSQL."""

    backend = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one statement (committed at once)."""
        return postgres.query(self.url, sql, parameters)

    def script(self, sql: str) -> None:
        """Several statements."""
        postgres.query(self.url, sql)


TestDatabase = SqliteFile | PostgresDatabase


def from_env(env: Mapping[str, str]) -> TestDatabase:
    """The database that DATABASE_URL or SNIPPETS_DB in ``env`` names."""
    if env.get("DATABASE_URL"):
        return PostgresDatabase(env["DATABASE_URL"])
    return SqliteFile(Path(env["SNIPPETS_DB"]))


def row_count(database: TestDatabase | Path) -> int:
    """How many snippets are stored."""
    if isinstance(database, Path):
        database = SqliteFile(database)
    return int(database.query("SELECT count(*) FROM snippets")[0][0])


def statuses(database: TestDatabase) -> dict[str, int]:
    """How many snippets are in each status."""
    rows = database.query("SELECT status, count(*) FROM snippets GROUP BY status")
    return {str(status): int(count) for status, count in rows}


def count_highlight_writes(database: TestDatabase) -> None:
    """A trigger in the test's own database that counts writes of highlighted code."""
    if database.backend == "sqlite":
        database.script("""
            CREATE TABLE IF NOT EXISTS highlight_writes (snippet_id TEXT);
            CREATE TRIGGER IF NOT EXISTS count_writes AFTER UPDATE OF highlighted_code
            ON snippets WHEN NEW.highlighted_code IS NOT NULL
            BEGIN INSERT INTO highlight_writes VALUES (NEW.slug); END;
        """)
        return
    database.script("""
        CREATE TABLE IF NOT EXISTS highlight_writes (snippet_id TEXT);
        CREATE OR REPLACE FUNCTION count_write() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO highlight_writes VALUES (NEW.slug); RETURN NEW; END $$;
        CREATE OR REPLACE TRIGGER count_writes AFTER UPDATE OF highlighted_code ON snippets
        FOR EACH ROW WHEN (NEW.highlighted_code IS NOT NULL) EXECUTE FUNCTION count_write();
    """)


def highlight_writes(database: TestDatabase, snippet_id: str) -> int:
    """How many times this snippet's highlighted code was written (count_highlight_writes)."""
    rows = database.query("SELECT count(*) FROM highlight_writes WHERE snippet_id = ?",
                          (snippet_id,))
    return int(rows[0][0])


def writes_per_snippet(database: TestDatabase) -> dict[str, int]:
    """How many times each snippet's highlighted code was written (count_highlight_writes)."""
    rows = database.query("SELECT s.slug, count(w.snippet_id) FROM snippets s LEFT JOIN"
                          " highlight_writes w ON w.snippet_id = s.slug GROUP BY s.slug")
    return {str(snippet_id): int(count) for snippet_id, count in rows}


def transaction_open(database: TestDatabase) -> bool:
    """Whether a connection holds a transaction open: on SQLite, another connection cannot
    take the write lock at once; on PostgreSQL, a session of the app is idle in one."""
    if isinstance(database, SqliteFile):
        conn = sqlite3.connect(database.path, timeout=0.5, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return True
        finally:
            conn.close()
        return False
    rows = database.query("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                          " current_database() AND state LIKE 'idle in transaction%'")
    return int(rows[0][0]) > 0


def stored_time(database: TestDatabase, moment: datetime) -> datetime | str:
    """A time as a parameter for this backend: SQLite's stored text, or the datetime."""
    return moment if database.backend == "postgres" else timestamp(moment)
