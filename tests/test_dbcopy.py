"""``python -m snippet_service.dbcopy``: a few thousand snippets, in every state, go from a
SQLite file to a private PostgreSQL with their ids, revisions and times; a second run makes
no duplicates, a third carries a change over; the copy goes on from the new ids."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from snippet_service import bulk, db
from snippet_service.backend import as_utc
from snippet_service.dbcopy import COLUMNS, open_url
from tests.conftest import PrivatePostgres
from tests.servers import ROOT

SNIPPETS = 3000


def dbcopy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "snippet_service.dbcopy", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


async def rows(url: str) -> dict[str, tuple[Any, ...]]:
    """Every snippet of the database at url, by its public id, with its stored key (the
    ``id`` column), times as aware UTC datetimes."""
    database = open_url(url)
    await database.open()
    try:
        found = await database.fetch(f"SELECT {', '.join(COLUMNS)} FROM snippets ORDER BY id")
    finally:
        await database.close()
    return {str(row["slug"]): tuple(as_utc(row[name]) if name in db.TIME_COLUMNS
                                  and row[name] is not None else row[name]
                                  for name in COLUMNS) for row in found}


async def fill(url: str) -> None:
    """SNIPPETS snippets: pending, highlighted, failed, re-highlighted (revision 2, 3),
    deferred and expiring, with non-ASCII code."""
    database = open_url(url)
    await database.open()
    try:
        drafts = [bulk.Draft("python", f"print('snippet {n} ✓')\n" * (1 + n % 5),
                             highlight_in=60.0 if n % 7 == 0 else 0.0,
                             expires_in=86400.0 if n % 11 == 0 else None)
                  for n in range(SNIPPETS)]
        created = await bulk.create_snippets(database, drafts)
        await bulk.mark_many_highlighted(
            database, [(s.id, s.revision, f"<pre>{s.id}</pre>") for s in created[::2]])
        for snippet in created[1:300:3]:
            await db.mark_failed(database, snippet.id, snippet.revision, "refused: teapot")
        for snippet in created[:100]:
            await db.rehighlight(database, snippet.id, "ruby")
        for snippet in created[:30]:
            await db.rehighlight(database, snippet.id)
    finally:
        await database.close()


async def test_sqlite_to_postgresql_twice_then_a_change(
        tmp_path: Path, postgres: PrivatePostgres) -> None:
    source = f"sqlite:///{tmp_path / 'snippets.db'}"
    target = postgres.create_database()
    await fill(source)
    expected = await rows(source)
    assert len(expected) == SNIPPETS
    assert {row[COLUMNS.index("revision")] for row in expected.values()} == {1, 2, 3}

    first = dbcopy("--from", source, "--to", target)
    assert first.returncode == 0, first.stderr
    assert f"copied {SNIPPETS:,} of {SNIPPETS:,} snippets (100%)" in first.stderr
    assert f"{SNIPPETS:,} copied or updated; {SNIPPETS:,} in" in first.stdout
    copied = await rows(target)
    assert copied == expected  # ids, states, revisions, code, HTML and times, exactly

    again = dbcopy("--from", source, "--to", target)
    assert again.returncode == 0, again.stderr
    assert f"0 copied or updated; {SNIPPETS:,} in" in again.stdout
    assert await rows(target) == expected

    changed = next(iter(expected))
    database = open_url(source)
    await database.open()
    try:
        newer = await db.rehighlight(database, changed, "go")
    finally:
        await database.close()
    third = dbcopy("--from", source, "--to", target)
    assert third.returncode == 0, third.stderr
    assert f"1 copied or updated; {SNIPPETS:,} in" in third.stdout
    after = await rows(target)
    assert after[changed][COLUMNS.index("language")] == "go"
    assert after[changed][COLUMNS.index("revision")] == newer.revision
    assert isinstance(after[changed][COLUMNS.index("updated_at")], datetime)

    database = open_url(target)
    await database.open()
    try:
        fresh = await db.create_snippet(database, "python", "after the copy")
    finally:
        await database.close()
    key = COLUMNS.index("id")
    assert (await rows(target))[fresh.id][key] > max(row[key] for row in expected.values())


async def test_postgresql_back_to_a_new_sqlite_file(
        tmp_path: Path, postgres: PrivatePostgres) -> None:
    source = postgres.create_database()
    target = f"sqlite:///{tmp_path / 'back.db'}"
    await fill(source)
    done = dbcopy("--from", source, "--to", target)
    assert done.returncode == 0, done.stderr
    assert await rows(target) == await rows(source)


@pytest.mark.parametrize(("source", "target", "message"), [
    ("mysql://x/y", "sqlite:///var/x.db", "expected sqlite:///path or postgresql://"),
    ("sqlite://host/x.db", "sqlite:///var/x.db", "write a SQLite file as sqlite:///"),
    ("sqlite:///a.db", "sqlite:///a.db", "the same database"),
])
def test_bad_urls_are_refused(source: str, target: str, message: str) -> None:
    result = dbcopy("--from", source, "--to", target)
    assert result.returncode != 0
    assert message in result.stderr


def test_an_unreachable_target_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    source = f"sqlite:///{tmp_path / 'empty.db'}"
    result = dbcopy("--from", source, "--to", "postgresql://nobody@127.0.0.1:9/none")
    assert result.returncode == 1
    assert result.stderr.startswith("dbcopy: ") and "Traceback" not in result.stderr


async def test_a_target_holding_other_snippets_is_refused_untouched(
        tmp_path: Path, postgres: PrivatePostgres) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    target = postgres.create_database()
    await fill(source)
    database = open_url(target)
    await database.open()
    try:
        theirs = await db.create_snippet(database, "c", "int someone_elses;")
    finally:
        await database.close()
    before = await rows(target)
    result = dbcopy("--from", source, "--to", target)
    assert result.returncode == 1
    assert "holds other snippets" in result.stderr and "Traceback" not in result.stderr
    after = await rows(target)
    assert after[theirs.id] == before[theirs.id]  # their snippet is not overwritten


def test_a_missing_source_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    result = dbcopy("--from", f"sqlite:///{missing}", "--to", f"sqlite:///{tmp_path / 'x.db'}")
    assert result.returncode == 1 and "no such SQLite file" in result.stderr
    assert not missing.exists()


def test_a_password_in_a_bad_url_is_not_printed() -> None:
    result = dbcopy("--from", "postgresql+asyncpg://u:s3cret@h/db", "--to", "sqlite:///x.db")
    assert result.returncode == 1 and "s3cret" not in result.stderr
