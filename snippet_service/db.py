"""The data layer: snippets as Python values, and the queries on them, written once for
either backend (:mod:`snippet_service.backend`): SQLite by default
(:mod:`snippet_service.sqlite`), PostgreSQL when ``DATABASE_URL`` is set
(:mod:`snippet_service.postgres`)."""

from __future__ import annotations

import logging
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from snippet_service import sqlite
from snippet_service.backend import Database as Database
from snippet_service.backend import Row as Row
from snippet_service.backend import as_utc
from snippet_service.backend import parse_timestamp as parse_timestamp
from snippet_service.backend import timestamp as timestamp
from snippet_service.config import Config

logger = logging.getLogger("snippet_service.db")

PENDING, HIGHLIGHTED, FAILED = "pending", "highlighted", "failed"
STATUSES = (PENDING, HIGHLIGHTED, FAILED)
UNLISTED, PUBLIC = "unlisted", "public"
VISIBILITIES = (UNLISTED, PUBLIC)

# A snippet's id: 11 random URL-safe characters (64 bits) for a new one, never all digits,
# so that it can never meet the number a snippet made before random ids keeps as its id.
ID_PATTERN = re.compile(r"[0-9]{1,19}|[A-Za-z0-9_-]{10,32}")


def new_id() -> str:
    """A new snippet's random id."""
    while True:
        ident = secrets.token_urlsafe(8)
        if not ident.isdigit():
            return ident


def connect(config: Config) -> Database:
    """The database the configuration names (not open yet): PostgreSQL at DATABASE_URL,
    or else the SQLite file SNIPPETS_DB; DB_POOL_SIZE connections."""
    if config.database_url:
        from snippet_service import postgres  # asyncpg is loaded only when it is used

        return postgres.Database(config.database_url, config.db_pool_size)
    return sqlite.Database(config.db_path, config.db_pool_size)


@asynccontextmanager
async def database_ctx(config: Config) -> AsyncIterator[Database]:
    """The process's database pool, open for the block (see :func:`connect`)."""
    database = connect(config)
    try:
        await database.open()
        yield database
    finally:
        await database.close()


def transient_errors(config: Config) -> tuple[type[BaseException], ...]:
    """The errors of the configured backend that a job may retry: the database busy,
    restarting or out of reach."""
    if not config.database_url:
        return (sqlite3.OperationalError,)
    from snippet_service import postgres

    return postgres.TRANSIENT_ERRORS

class SnippetNotFound(LookupError):
    """No snippet has this id."""

    def __init__(self, snippet_id: str) -> None:
        super().__init__(f"snippet {snippet_id} not found")
        self.snippet_id = snippet_id


TIME_COLUMNS = frozenset({"created_at", "updated_at", "highlight_at", "expires_at", "queued_at"})
BOOL_COLUMNS = ("burn_after_reading", "detected")


@dataclass(frozen=True)
class Snippet:
    """One snippet; its times are timezone-aware UTC datetimes (to the millisecond).

    ``id`` is its public id (the ``slug`` column); the table's integer key stays inside the
    database. ``owner_hash`` is the SHA-256 of its owner token (None: nobody owns it)."""

    id: str
    language: str
    plain_code: str
    highlighted_code: str | None
    status: str
    error: str | None
    revision: int
    created_at: datetime
    updated_at: datetime
    highlight_at: datetime | None = None
    expires_at: datetime | None = None
    queued_at: datetime | None = None
    title: str | None = None
    visibility: str = UNLISTED
    owner_hash: str | None = None
    parent_id: str | None = None
    burn_after_reading: bool = False
    detected: bool = False
    ansi_code: str | None = None
    ansi_revision: int | None = None

    @classmethod
    def from_row(cls, row: Row) -> Snippet:
        return cls.from_columns({key: row[key] for key in row.keys()})

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> Snippet:
        """A snippet from its stored column values (times as either backend stores them)."""
        values: dict[str, Any] = {
            key: as_utc(value) if key in TIME_COLUMNS and value else value
            for key, value in columns.items() if key != "id"
        }
        values["id"] = values.pop("slug")
        for flag in BOOL_COLUMNS:  # SQLite answers 0 and 1
            values[flag] = bool(values.get(flag))
        return cls(**values)


def utcnow(offset: float = 0.0) -> datetime:
    """The current time in UTC, plus ``offset`` seconds, to the millisecond (as stored)."""
    return _millis(datetime.now(UTC) + timedelta(seconds=offset))


def _millis(moment: datetime) -> datetime:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def timestamp_in(seconds: float = 0.0) -> str:
    """The text SQLite stores for the time ``seconds`` from now."""
    return timestamp(utcnow(seconds))


@dataclass(frozen=True)
class Draft:
    """A snippet to create: its code and what its creator chose (``owner_hash``: the hash
    of the owner token handed back, see :mod:`snippet_service.owners`)."""

    language: str
    plain_code: str
    highlight_in: float = 0.0
    expires_in: float | None = None
    title: str | None = None
    visibility: str = UNLISTED
    owner_hash: str | None = None
    parent_id: str | None = None
    burn_after_reading: bool = False
    detected: bool = False


async def create_snippet(
    db: Database,
    language: str,
    plain_code: str,
    highlight_in: float = 0.0,
    expires_in: float | None = None,
) -> Snippet:
    """Store a new pending snippet (highlight no earlier than highlight_in seconds from now)."""
    from snippet_service import bulk

    (snippet,) = await bulk.create_snippets(
        db, [Draft(language, plain_code, highlight_in, expires_in)])
    return snippet


# What a creator chooses, kept as it was chosen: the same names in a Draft, a Snippet
# and the table.
CHOSEN = ("title", "visibility", "owner_hash", "parent_id", "burn_after_reading", "detected")
# The columns a new snippet's row is inserted with; ``slug`` is the Snippet's ``id``.
INSERT_COLUMNS = ("slug", "language", "plain_code", "status", "created_at", "updated_at",
                  "highlight_at", "expires_at", "queued_at", *CHOSEN)


def new_snippet(draft: Draft, snippet_id: str, now: datetime) -> Snippet:
    """The pending snippet a draft becomes as ``snippet_id``, made ``now`` (also its
    updated_at and queued_at)."""
    return Snippet(snippet_id, draft.language, draft.plain_code, None, PENDING, None, 1, now,
                   now, _after(now, draft.highlight_in), _after(now, draft.expires_in), now,
                   **{name: getattr(draft, name) for name in CHOSEN})


def insert_row(snippet: Snippet) -> tuple[Any, ...]:
    """The values of INSERT_COLUMNS that store a new snippet."""
    return (snippet.id, *(getattr(snippet, name) for name in INSERT_COLUMNS[1:]))


def _after(now: datetime, seconds: float | None) -> datetime | None:
    """``seconds`` after ``now`` (None without a positive delay), to the millisecond."""
    return _millis(now + timedelta(seconds=seconds)) if seconds and seconds > 0 else None


async def get_snippet(db: Database, snippet_id: str) -> Snippet:
    """Return one unexpired snippet or raise SnippetNotFound."""
    rows = await db.fetch(
        "SELECT * FROM snippets WHERE slug = ? AND (expires_at IS NULL OR expires_at > ?)",
        (snippet_id, utcnow()),
    )
    for row in rows:
        return Snippet.from_row(row)
    raise SnippetNotFound(snippet_id)


EXCERPT_CHARS = 200  # what a list shows of the code; the 200 in snippets_summary


@dataclass(frozen=True)
class SnippetSummary:
    """What a list of snippets shows: never the whole code or the highlighted HTML."""

    id: str
    title: str | None
    language: str
    status: str
    excerpt: str  # the first EXCERPT_CHARS characters of the code
    created_at: datetime
    updated_at: datetime


async def public_summaries(db: Database, limit: int = 20, offset: int = 0
                           ) -> list[SnippetSummary]:
    """The newest unexpired public snippets first, as list rows (a short excerpt of the
    code): ``limit`` of them after skipping ``offset``."""
    rows = await db.fetch(
        f"SELECT slug, title, language, status, substr(plain_code, 1, {EXCERPT_CHARS}),"
        f" created_at, updated_at FROM snippets{db.summary_index}"
        " WHERE visibility = 'public' AND (expires_at IS NULL OR expires_at > ?)"
        " ORDER BY id DESC LIMIT ? OFFSET ?",
        (utcnow(), limit, offset),
    )
    return [SnippetSummary(row[0], row[1], row[2], row[3], row[4], as_utc(row[5]),
                           as_utc(row[6])) for row in rows]


async def snippet_status(db: Database, snippet_id: str) -> tuple[str, int] | None:
    """The (status, revision) of one unexpired snippet, or None; never reads its code."""
    rows = await db.fetch(
        f"SELECT status, revision FROM snippets{db.state_index}"
        " WHERE slug = ? AND (expires_at IS NULL OR expires_at > ?)",
        (snippet_id, utcnow()),
    )
    for row in rows:
        return str(row[0]), int(row[1])
    return None


async def count_snippets(db: Database) -> int:
    """How many snippets are stored."""
    (row,) = await db.fetch("SELECT count(*) FROM snippets")
    return int(row[0])


async def _finish(db: Database, snippet_id: str, revision: int, **values: Any) -> bool:
    columns = ", ".join(f"{name} = ?" for name in values)
    changed = await db.write(
        f"UPDATE snippets SET {columns}, updated_at = ?"
        " WHERE slug = ? AND revision = ? AND status = ?",
        (*values.values(), utcnow(), snippet_id, revision, PENDING),
    )
    return changed == 1


async def mark_highlighted(db: Database, snippet_id: str, revision: int, html: str) -> bool:
    """Store the highlighted HTML of a pending revision; False if it was already finished."""
    return await _finish(
        db, snippet_id, revision, highlighted_code=html, status=HIGHLIGHTED, error=None
    )


async def mark_failed(db: Database, snippet_id: str, revision: int, error: str) -> bool:
    """Record why a pending revision could not be highlighted; False if already finished."""
    return await _finish(db, snippet_id, revision, status=FAILED, error=error)


async def rehighlight(db: Database, snippet_id: str, language: str | None = None) -> Snippet:
    """Start a new revision: pending again (optionally in another language, which is then
    no longer a detected one)."""
    now = utcnow()
    changed = await db.write(
        "UPDATE snippets SET language = coalesce(?, language), status = ?,"
        " highlighted_code = NULL, error = NULL, revision = revision + 1, updated_at = ?,"
        " highlight_at = NULL, queued_at = ?,"
        " detected = detected AND ?"
        " WHERE slug = ? AND (expires_at IS NULL OR expires_at > ?)",
        (language, PENDING, now, now, language is None, snippet_id, now),
    )
    if changed != 1:
        raise SnippetNotFound(snippet_id)
    return await get_snippet(db, snippet_id)


async def delete_snippet(db: Database, snippet_id: str) -> bool:
    """Delete a snippet; False if it was already gone."""
    return await db.write("DELETE FROM snippets WHERE slug = ?", (snippet_id,)) == 1


async def take_snippet(db: Database, snippet_id: str) -> Snippet:
    """Delete an unexpired snippet and return it, in one statement: of two readers at the
    same time only one gets it (burn after reading). Raises SnippetNotFound."""
    rows = await db.write_returning(
        "DELETE FROM snippets WHERE slug = ? AND (expires_at IS NULL OR expires_at > ?)"
        " RETURNING *", (snippet_id, utcnow()))
    for row in rows:
        return Snippet.from_row(row)
    raise SnippetNotFound(snippet_id)


async def store_ansi(db: Database, snippet_id: str, revision: int, text: str) -> bool:
    """Keep a revision's terminal colouring; False if the snippet moved on or is gone."""
    return await db.write(
        "UPDATE snippets SET ansi_code = ?, ansi_revision = ? WHERE slug = ? AND revision = ?",
        (text, revision, snippet_id, revision)) == 1


async def purge_expired(db: Database) -> int:
    """Delete every expired snippet; return how many."""
    return await db.write(
        "DELETE FROM snippets WHERE expires_at IS NOT NULL AND expires_at <= ?", (utcnow(),)
    )


async def stale_pending(db: Database, older_than: float, limit: int = 500) -> list[Snippet]:
    """Pending snippets last enqueued more than ``older_than`` seconds ago."""
    rows = await db.fetch(
        "SELECT * FROM snippets WHERE status = ? AND coalesce(queued_at, updated_at) <= ?"
        " AND (expires_at IS NULL OR expires_at > ?) ORDER BY id LIMIT ?",
        (PENDING, utcnow(-older_than), utcnow(), limit),
    )
    return [Snippet.from_row(row) for row in rows]


async def mark_queued(db: Database, snippet_ids: list[str]) -> None:
    """Note that these snippets' jobs were (re-)enqueued just now."""
    if not snippet_ids:
        return
    now = utcnow()
    await db.write_many("UPDATE snippets SET queued_at = ? WHERE slug = ?",
                        [(now, snippet_id) for snippet_id in sorted(snippet_ids)])


async def ping(db: Database) -> None:
    """Raise if the database cannot answer a query."""
    await db.fetch("SELECT 1")
