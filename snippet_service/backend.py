"""The one interface the data layer's queries (:mod:`snippet_service.db`,
:mod:`snippet_service.bulk`) use, whichever database answers: SQLite
(:mod:`snippet_service.sqlite`, the default) or PostgreSQL (:mod:`snippet_service.postgres`,
with ``DATABASE_URL``).

The queries are written once, in SQL both understand, with ``?`` placeholders (the
PostgreSQL backend numbers them). What differs is kept here as the dialect: the
``summary_index`` hint SQLite is given, and times. Parameters carry aware UTC datetimes;
SQLite stores them as ISO 8601 text (which sorts as text), PostgreSQL as ``timestamptz``.
Rows come back with times as stored, and :func:`as_utc` makes either an aware UTC datetime.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol


class Row(Protocol):
    """A row as either backend returns it: by column name or position."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def keys(self) -> Iterable[str]: ...


class Database(abc.ABC):
    """A bounded pool of connections to one database, opened with :meth:`open`.

    Each method is one statement (``write_many``: one transaction) in autocommit, so a
    caller cancelled at any moment leaves no transaction open: a write either applies
    whole or not at all.
    """

    #: the backend's name, as ``/healthz`` shows it
    name: ClassVar[str]
    #: what follows ``FROM snippets`` in the list and status queries (an index hint)
    summary_index: ClassVar[str] = ""
    #: what follows ``FROM snippets`` in the status check (an index hint)
    state_index: ClassVar[str] = ""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection."""

    @abc.abstractmethod
    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
        """The rows of one query."""

    @abc.abstractmethod
    async def write(self, sql: str, parameters: Sequence[Any] = ()) -> int:
        """One write statement; how many rows it changed."""

    @abc.abstractmethod
    async def write_returning(self, sql: str, parameters: Sequence[Any] = ()) -> list[Row]:
        """One write statement with a RETURNING clause; its rows."""

    @abc.abstractmethod
    async def write_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """One write statement for each parameter row, in one transaction."""


def timestamp(moment: datetime) -> str:
    """A datetime as SQLite stores it: ISO 8601 UTC with milliseconds and "Z"."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_timestamp(value: str) -> datetime:
    """The aware UTC datetime of a time SQLite stored."""
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


def as_utc(value: str | datetime) -> datetime:
    """A stored time (SQLite's text or PostgreSQL's datetime) as an aware UTC datetime."""
    if isinstance(value, str):
        return parse_timestamp(value)
    return value if value.tzinfo is UTC else value.astimezone(UTC)
