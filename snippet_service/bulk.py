"""Multi-row statements for the batches: many new snippets in one INSERT, many snippets in
one SELECT, many highlight results in one UPDATE (group commit). Each is one statement, so
either backend applies it atomically in autocommit mode."""

from __future__ import annotations

from collections.abc import Sequence

from snippet_service.db import (
    HIGHLIGHTED,
    INSERT_COLUMNS,
    PENDING,
    Database,
    Draft,
    Snippet,
    insert_row,
    new_id,
    new_snippet,
    utcnow,
)

__all__ = ["Draft", "create_snippets", "get_snippets", "mark_many_highlighted"]

# One multi-row statement stays well below SQLite's 32,766 bound parameters (and
# PostgreSQL's 32,767).
MAX_BATCH_ROWS = 500


async def create_snippets(database: Database, drafts: Sequence[Draft]) -> list[Snippet]:
    """Store many pending snippets in one statement (one transaction); in the drafts' order."""
    created: list[Snippet] = []
    for first in range(0, len(drafts), MAX_BATCH_ROWS):
        chunk, now = drafts[first:first + MAX_BATCH_ROWS], utcnow()
        row_marks = f"({', '.join('?' * len(INSERT_COLUMNS))})"
        snippets = [new_snippet(draft, new_id(), now) for draft in chunk]
        changed = await database.write(
            f"INSERT INTO snippets ({', '.join(INSERT_COLUMNS)})"
            f" VALUES {', '.join([row_marks] * len(chunk))}",
            tuple(value for snippet in snippets for value in insert_row(snippet)),
        )
        if changed != len(chunk):
            raise RuntimeError(f"inserted {changed} of {len(chunk)} snippets")
        created.extend(snippets)
    return created


async def get_snippets(database: Database, snippet_ids: Sequence[str]) -> dict[str, Snippet]:
    """The unexpired snippets among these ids, in one query (missing ids are left out)."""
    found: dict[str, Snippet] = {}
    unique = list(dict.fromkeys(snippet_ids))
    for first in range(0, len(unique), MAX_BATCH_ROWS):
        chunk = unique[first:first + MAX_BATCH_ROWS]
        rows = await database.fetch(
            f"SELECT * FROM snippets WHERE slug IN ({', '.join('?' * len(chunk))})"
            " AND (expires_at IS NULL OR expires_at > ?)",
            (*chunk, utcnow()),
        )
        for row in rows:
            snippet = Snippet.from_row(row)
            found[snippet.id] = snippet
    return found


async def mark_many_highlighted(
    database: Database, results: Sequence[tuple[str, int, str]]
) -> set[tuple[str, int]]:
    """Store many (snippet id, revision, html) results in one statement per chunk (group
    commit). As with :func:`mark_highlighted`, a row is written only while that revision is
    still pending; returns the (id, revision) pairs that were written."""
    written: set[tuple[str, int]] = set()
    ordered = sorted(results)  # rows locked in one order: two writers never deadlock
    for first in range(0, len(ordered), MAX_BATCH_ROWS):
        chunk = ordered[first:first + MAX_BATCH_ROWS]
        # PostgreSQL types a VALUES list's parameters from its first row.
        values = ", ".join(["(CAST(? AS TEXT), CAST(? AS INTEGER), CAST(? AS TEXT))"]
                           + ["(?, ?, ?)"] * (len(chunk) - 1))
        rows = await database.write_returning(
            f"WITH done(slug, revision, html) AS (VALUES {values})"
            " UPDATE snippets SET highlighted_code = done.html, status = ?, error = NULL,"
            " updated_at = ? FROM done WHERE snippets.slug = done.slug"
            " AND snippets.revision = done.revision AND snippets.status = ?"
            " RETURNING snippets.slug, snippets.revision",
            (*(value for result in chunk for value in result), HIGHLIGHTED, utcnow(),
             PENDING),
        )
        written.update((str(row[0]), int(row[1])) for row in rows)
    return written
