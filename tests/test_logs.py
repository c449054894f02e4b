"""Logs an operator can grep: LOG_FORMAT=json gives one JSON object per line, the default
stays text, and every line of a web request carries its request id."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import aiohttp
import pytest

from snippet_service import logs
from snippet_service.config import Config, ConfigError
from tests.conftest import MakeStack
from tests.helpers import until
from tests.servers import Stack

OUR_ID = re.compile(r"[0-9a-f]{16}")


def record(message: str, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("snippet_service.test", logging.WARNING, __file__, 1, message,
                             None, exc_info)


def formatted(formatter: logging.Formatter, entry: logging.LogRecord) -> str:
    logs.ContextFilter().filter(entry)
    return formatter.format(entry)


def test_json_lines_carry_the_ids_and_the_traceback() -> None:
    with logs.bound(request_id="req-1", job_id="highlight:7:1", snippet_id=7):
        line = formatted(logs.JsonFormatter(), record("hello %s"))
    entry = json.loads(line)
    assert entry["message"] == "hello %s" and entry["level"] == "WARNING"
    assert (entry["request_id"], entry["job_id"], entry["snippet_id"]) == (
        "req-1", "highlight:7:1", 7)
    try:
        raise KeyError("boom")
    except KeyError:
        import sys

        failed = json.loads(formatted(logs.JsonFormatter(), record("x", sys.exc_info())))
    assert "\n" not in formatted(logs.JsonFormatter(), record("two\nlines"))
    assert "KeyError: 'boom'" in failed["traceback"] and "request_id" not in failed


def test_text_lines_carry_the_ids() -> None:
    formatter = logging.Formatter(logs.TEXT_FORMAT)
    with logs.bound(request_id="req-2"):
        line = formatted(formatter, record("served"))
    assert line.endswith("snippet_service.test WARNING served request_id=req-2")
    assert formatted(formatter, record("plain")).endswith("WARNING plain")


@pytest.mark.parametrize(("value", "valid"), [("json", True), ("TEXT", True), ("", True),
                                              ("yaml", False)])
def test_log_format_is_checked(value: str, valid: bool) -> None:
    if valid:
        assert Config.from_env({"LOG_FORMAT": value}).log_format in ("json", "text")
        return
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Config.from_env({"LOG_FORMAT": value})
    with pytest.raises(SystemExit, match="LOG_FORMAT"):
        logs.log_format({"LOG_FORMAT": value})


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of a log, each of which must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def json_stack(make_stack: MakeStack) -> Stack:
    return make_stack(LOG_FORMAT="json", ACCESS_LOG="1", BODY_READ_TIMEOUT="0.3")


async def test_json_logs_carry_the_request_id(json_stack: Stack,
                                              http: aiohttp.ClientSession) -> None:
    stack = json_stack
    async with http.get(f"{stack.url}/snippets/999999",
                        headers={"X-Request-ID": "edge-42.a"}) as response:
        assert response.status == 404
        assert response.headers["X-Request-ID"] == "edge-42.a"

    # A line the request's own code logs: a body that never arrives in BODY_READ_TIMEOUT.
    host, port = stack.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/snippets HTTP/1.1\r\nHost: x\r\nX-Request-ID: slow-1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 50\r\n\r\n{")
    await writer.drain()
    assert b" 408 " in await reader.readline()
    writer.close()

    def lines_for(request_id: str) -> list[dict[str, Any]]:
        return [e for e in json_lines(stack.web.log()) if e.get("request_id") == request_id]

    access = await until(lambda: [e for e in lines_for("edge-42.a")
                                  if e["logger"] == "aiohttp.access"], 10, stack.web.log)
    assert '"GET /snippets/999999 HTTP/1.1" 404' in access[0]["message"]
    slow = await until(lambda: [e for e in lines_for("slow-1")
                                if "did not arrive" in e["message"]], 10, stack.web.log)
    assert slow[0]["logger"] == "snippet_service.web.middlewares"
    # The highlighter's lines are JSON too (json_lines fails on any other line).
    assert any(e["logger"] == "snippet_service.highlighter"
               for e in json_lines(stack.highlighter.log()))


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 65, "semi;colon", ""])
async def test_an_unusable_request_id_is_replaced(stack: Stack, http: aiohttp.ClientSession,
                                                  incoming: str) -> None:
    async with http.get(f"{stack.url}/healthz", headers={"X-Request-ID": incoming}) as response:
        assert OUR_ID.fullmatch(response.headers["X-Request-ID"])


async def test_the_default_log_format_is_text(stack: Stack) -> None:
    first = stack.web.log().splitlines()[0]
    assert not first.startswith("{") and " INFO " in first
