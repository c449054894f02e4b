"""Copy every snippet from one database to another, ids, revisions and times included:

    python -m snippet_service.dbcopy --from sqlite:///var/snippets.db \\
        --to postgresql://user:password@host:5432/snippets

Either side may be SQLite (``sqlite:///relative/path``, ``sqlite:////absolute/path``) or
PostgreSQL (``postgresql://…``); the target's schema is created or brought up to date first.
Rows go over in pages, in id order. A row the target already has is overwritten only by a
newer state of it (a higher revision, or the same revision updated later), so running the
copy twice, or again after the source changed, makes no duplicates and loses nothing newer.
Progress goes to standard error; at the end every source id is checked to be in the target.
Stop the web apps and workers on the source first, or copy once more after they stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from snippet_service import db
from snippet_service.backend import as_utc
from snippet_service.config import Config, ConfigError

COLUMNS = ("id", "language", "plain_code", "highlighted_code", "status", "error", "revision",
           "created_at", "updated_at", "highlight_at", "expires_at", "queued_at", "slug",
           "title", "visibility", "owner_hash", "parent_id", "burn_after_reading", "detected",
           "ansi_code", "ansi_revision")
TIME_COLUMNS = frozenset(db.TIME_COLUMNS)
BOOL_COLUMNS = frozenset(db.BOOL_COLUMNS)  # SQLite's 0/1, PostgreSQL's booleans
PAGE_ROWS = 500  # 21 parameters a row: well below either backend's limit
_ROW = f"({', '.join('?' * len(COLUMNS))})"
_UPSERT_TAIL = (
    " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{name} = excluded.{name}" for name in COLUMNS if name != "id")
    + " WHERE snippets.created_at = excluded.created_at AND (snippets.revision < excluded.revision"
    " OR (snippets.revision = excluded.revision AND snippets.updated_at < excluded.updated_at))"
)


class CopyError(Exception):
    """The copy could not be made or checked."""


def open_url(url: str, pool_size: int = 2, must_exist: bool = False) -> db.Database:
    """A data-layer database (not open yet) for a sqlite:/// or postgresql:// URL
    (``must_exist``: a SQLite file that is not there is an error, not a new database)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc or not parts.path.startswith("/") or parts.path == "/":
            raise CopyError(f"{shown(url)!r}: write a SQLite file as sqlite:///relative/path "
                            "or sqlite:////absolute/path")
        path = Path(parts.path[1:])
        if must_exist and not path.is_file():
            raise CopyError(f"{shown(url)!r}: there is no such SQLite file")
        env = {"SNIPPETS_DB": str(path)}
    elif parts.scheme in ("postgresql", "postgres"):
        env = {"DATABASE_URL": url}
    else:
        raise CopyError(f"{shown(url)!r}: expected sqlite:///path or postgresql://…")
    try:
        config = Config.from_env({**env, "DB_POOL_SIZE": str(pool_size)})
    except ConfigError as exc:
        raise CopyError(str(exc)) from None
    return db.connect(config)


def shown(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


@dataclass
class Report:
    source_rows: int
    copied: int  # rows the target took (new, or newer than what it had)
    target_rows: int
    seconds: float


def _values(row: db.Row) -> list[Any]:
    """A source row as parameters: times as aware datetimes, which each backend stores its
    own way (text for SQLite, timestamptz for PostgreSQL)."""
    return [as_utc(row[name]) if name in TIME_COLUMNS and row[name] is not None
            else bool(row[name]) if name in BOOL_COLUMNS else row[name]
            for name in COLUMNS]


async def _same_snippets(target: db.Database, rows: Sequence[db.Row]) -> None:
    """Raise CopyError if the target holds another snippet under one of these ids (one
    created at another time): a copy never overwrites a snippet that is not the same."""
    created = {int(row["id"]): as_utc(row["created_at"]) for row in rows}
    held = await target.fetch(
        f"SELECT id, created_at FROM snippets WHERE id IN ({', '.join('?' * len(created))})",
        list(created))
    other = sorted(int(row[0]) for row in held if as_utc(row[1]) != created[int(row[0])])
    if other:
        raise CopyError(f"the target holds other snippets under {len(other)} of the ids "
                        f"copied (first: {other[0]}); copy into an empty database")


async def _upsert(target: db.Database, rows: Sequence[db.Row]) -> int:
    await _same_snippets(target, rows)
    sql = (f"INSERT INTO snippets ({', '.join(COLUMNS)}) VALUES "
           f"{', '.join([_ROW] * len(rows))}{_UPSERT_TAIL} RETURNING id")
    taken = await target.write_returning(sql, [value for row in rows for value in _values(row)])
    return len(taken)


async def _missing(source: db.Database, target: db.Database) -> int:
    """How many source ids the target lacks, compared page by page."""
    missing, last = 0, 0
    while True:
        ids = [int(row[0]) for row in await source.fetch(
            "SELECT id FROM snippets WHERE id > ? ORDER BY id LIMIT ?", (last, PAGE_ROWS * 4))]
        if not ids:
            return missing
        found = await target.fetch(
            f"SELECT count(*) FROM snippets WHERE id IN ({', '.join('?' * len(ids))})", ids)
        missing += len(ids) - int(found[0][0])
        last = ids[-1]


async def _count(database: db.Database) -> int:
    return int((await database.fetch("SELECT count(*) FROM snippets"))[0][0])


async def copy(source_url: str, target_url: str, progress: TextIO | None = None) -> Report:
    """Copy every snippet; raise CopyError if a source row is not in the target after."""
    source, target = open_url(source_url, must_exist=True), open_url(target_url)
    started = time.monotonic()
    await source.open()
    try:
        await target.open()
        try:
            total = await _count(source)
            copied = done = last = 0
            shown_at = 0.0
            while True:
                rows = await source.fetch(
                    f"SELECT {', '.join(COLUMNS)} FROM snippets WHERE id > ? ORDER BY id LIMIT ?",
                    (last, PAGE_ROWS))
                if not rows:
                    break
                copied += await _upsert(target, rows)
                done += len(rows)
                last = int(rows[-1]["id"])
                now = time.monotonic()
                if progress is not None and (now - shown_at >= 1.0 or done >= total):
                    shown_at = now
                    print(f"copied {done:,} of {total:,} snippets "
                          f"({100 * done / max(total, 1):.0f}%)", file=progress, flush=True)
            await _after_copy(target)
            missing = await _missing(source, target)
            target_rows = await _count(target)
        finally:
            await target.close()
    finally:
        await source.close()
    if missing:
        raise CopyError(f"{missing} of {total} source snippets are not in the target")
    return Report(total, copied, target_rows, time.monotonic() - started)


async def _after_copy(target: db.Database) -> None:
    """PostgreSQL's identity does not move past ids inserted explicitly: move it past the
    largest, so the next new snippet gets a fresh id. (SQLite's AUTOINCREMENT does.)"""
    if target.name == "postgresql":
        await target.fetch(
            "SELECT setval(pg_get_serial_sequence('snippets', 'id'), greatest("
            "(SELECT max(id) FROM snippets), coalesce(pg_sequence_last_value("
            "pg_get_serial_sequence('snippets', 'id')::regclass), 0), 1))")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m snippet_service.dbcopy",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", required=True, metavar="URL",
                        help="sqlite:///path or postgresql://… to copy from")
    parser.add_argument("--to", dest="target", required=True, metavar="URL",
                        help="sqlite:///path or postgresql://… to copy to")
    args = parser.parse_args(argv)
    if args.source == args.target:
        parser.error("--from and --to are the same database")
    try:
        report = asyncio.run(copy(args.source, args.target, progress=sys.stderr))
    except CopyError as exc:
        print(f"dbcopy: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a database that cannot be reached or read: say which
        print(f"dbcopy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"{report.source_rows:,} snippets in {shown(args.source)}; {report.copied:,} copied "
          f"or updated; {report.target_rows:,} in {shown(args.target)}; every source snippet "
          f"is in the target ({report.seconds:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
