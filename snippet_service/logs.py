"""Logging for every process: human-readable lines by default, one JSON object per line
with ``LOG_FORMAT=json``. Lines logged while a request or a job runs carry its ids."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s%(context)s"
# The ids of the request or job being served; each task sees its own values.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
JOB_ID: ContextVar[str | None] = ContextVar("job_id", default=None)
SNIPPET_ID: ContextVar[object | None] = ContextVar("snippet_id", default=None)


def context_fields() -> dict[str, object]:
    """The ids set for the running task (only those that are set)."""
    fields = {"request_id": REQUEST_ID.get(), "job_id": JOB_ID.get(),
              "snippet_id": SNIPPET_ID.get()}
    return {key: value for key, value in fields.items() if value is not None}


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Log lines within the block carry these ids (request_id, job_id, snippet_id)."""
    variables: dict[str, ContextVar[Any]] = {
        "request_id": REQUEST_ID, "job_id": JOB_ID, "snippet_id": SNIPPET_ID}
    tokens = [(variables[key], variables[key].set(value)) for key, value in ids.items()]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


class ContextFilter(logging.Filter):
    """Adds the running task's ids to each record (``record.context`` for text lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = context_fields()
        record.ids = fields
        record.context = "".join(f" {key}={value}" for key, value in fields.items())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        entry.update(getattr(record, "ids", None) or {})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_format(env: Mapping[str, str] | None = None) -> str:
    """LOG_FORMAT: ``text`` (the default) or ``json``; anything else is an error."""
    value = (os.environ if env is None else env).get("LOG_FORMAT", "").strip().lower() or "text"
    if value not in FORMATS:
        raise SystemExit(f"configuration error: LOG_FORMAT={value!r} is invalid: "
                         f"use one of {', '.join(FORMATS)}")
    return value


def setup_logging(level: int = logging.INFO, env: Mapping[str, str] | None = None) -> None:
    """Configure the root logger for this process from LOG_FORMAT."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if log_format(env) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
