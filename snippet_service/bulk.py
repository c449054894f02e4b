"""Multi-row statements for the batches: many new snippets in one INSERT, many snippets in
one SELECT, many highlight results in one UPDATE (group commit). Each is one statement, so
either backend applies it atomically in autocommit mode."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from snippet_service.db import (
    HIGHLIGHTED,
    INSERT_COLUMNS,
    PENDING,
    Database,
    Snippet,
    insert_row,
    new_snippet,
    utcnow,
)


@dataclass(frozen=True)
class Draft:
    """A snippet to create: see :func:`create_snippet`."""

    language: str
    plain_code: str
    highlight_in: float = 0.0
    expires_in: float | None = None


# One multi-row statement stays well below SQLite's 32,766 bound parameters (and
# PostgreSQL's 32,767).
MAX_BATCH_ROWS = 500


async def create_snippets(database: Database, drafts: Sequence[Draft]) -> list[Snippet]:
    """Store many pending snippets in one statement (one transaction); in the drafts' order."""
    created: list[Snippet] = []
    for first in range(0, len(drafts), MAX_BATCH_ROWS):
        chunk, now = drafts[first:first + MAX_BATCH_ROWS], utcnow()
        row_marks = f"({', '.join('?' * len(INSERT_COLUMNS))})"
        returned = await database.write_returning(
            f"INSERT INTO snippets ({', '.join(INSERT_COLUMNS)})"
            f" VALUES {', '.join([row_marks] * len(chunk))} RETURNING id",
            tuple(value for d in chunk for value in
                  insert_row(d.language, d.plain_code, d.highlight_in, d.expires_in, now)),
        )
        # Either backend gives the rows of one statement rising ids in VALUES order
        # (SQLite's AUTOINCREMENT; PostgreSQL's identity, drawn row by row).
        ids = sorted(row[0] for row in returned)
        if len(ids) != len(chunk):
            raise RuntimeError(f"inserted {len(ids)} of {len(chunk)} snippets")
        created.extend(new_snippet(snippet_id, d.language, d.plain_code, d.highlight_in,
                                   d.expires_in, now)
                       for snippet_id, d in zip(ids, chunk, strict=True))
    return created


async def get_snippets(database: Database, snippet_ids: Sequence[int]) -> dict[int, Snippet]:
    """The unexpired snippets among these ids, in one query (missing ids are left out)."""
    found: dict[int, Snippet] = {}
    unique = list(dict.fromkeys(snippet_ids))
    for first in range(0, len(unique), MAX_BATCH_ROWS):
        chunk = unique[first:first + MAX_BATCH_ROWS]
        rows = await database.fetch(
            f"SELECT * FROM snippets WHERE id IN ({', '.join('?' * len(chunk))})"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (*chunk, utcnow()),
        )
        for row in rows:
            snippet = Snippet.from_row(row)
            found[snippet.id] = snippet
    return found


async def mark_many_highlighted(
    database: Database, results: Sequence[tuple[int, int, str]]
) -> set[tuple[int, int]]:
    """Store many (snippet id, revision, html) results in one statement per chunk (group
    commit). As with :func:`mark_highlighted`, a row is written only while that revision is
    still pending; returns the (id, revision) pairs that were written."""
    written: set[tuple[int, int]] = set()
    ordered = sorted(results)  # rows locked in id order: two writers never deadlock
    for first in range(0, len(ordered), MAX_BATCH_ROWS):
        chunk = ordered[first:first + MAX_BATCH_ROWS]
        # PostgreSQL types a VALUES list's parameters from its first row.
        values = ", ".join(["(CAST(? AS BIGINT), CAST(? AS INTEGER), CAST(? AS TEXT))"]
                           + ["(?, ?, ?)"] * (len(chunk) - 1))
        rows = await database.write_returning(
            f"WITH done(id, revision, html) AS (VALUES {values})"
            " UPDATE snippets SET highlighted_code = done.html, status = ?, error = NULL,"
            " updated_at = ? FROM done WHERE snippets.id = done.id"
            " AND snippets.revision = done.revision AND snippets.status = ?"
            " RETURNING snippets.id, snippets.revision",
            (*(value for result in chunk for value in result), HIGHLIGHTED, utcnow(),
             PENDING),
        )
        written.update((int(row[0]), int(row[1])) for row in rows)
    return written
