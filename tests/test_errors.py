"""Error pages: 404, 405, 413, 415, 403 and 500 come from the error template (JSON under
/api) with the request id; an unexpected error is logged with that id and its traceback,
which never reaches the response. (429 is in test_limits.py.)"""

from __future__ import annotations

import io
import re
import sqlite3

import aiohttp
import pytest

from snippet_service.web.forms import max_body_bytes
from snippet_service.web.middlewares import TITLES
from tests.helpers import HTML, until
from tests.servers import Stack

LEAKS = ("Traceback", "File \"", "OperationalError", "sqlite3", "Exception")


def _request_kwargs(path: str) -> dict[str, object]:
    """The body that gets the status after the ``?`` of a test path."""
    case = path.rpartition("?")[2]
    body_type = "application/json" if path.startswith("/api/") else \
        "application/x-www-form-urlencoded"
    if case == "413":
        big = io.BytesIO(b"x" * (max_body_bytes(512 * 1024) + 1))
        return {"data": big, "headers": {"Content-Type": body_type}}
    if case == "415":
        return {"data": b"{}", "headers": {"Content-Type": "text/plain"}}
    if case == "403":  # a form without the token
        return {"data": {"language": "python", "plain_code": "x"}}
    if path.startswith("/snippets/"):  # a browser's request (others get plain text)
        return {"headers": HTML}
    return {}


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/snippets/424242", 404),
    ("GET", "/no/such/page", 404),
    ("DELETE", "/snippets", 405),
    ("POST", "/snippets?403", 403),
    ("POST", "/snippets?413", 413),
    ("POST", "/snippets?415", 415),
])
async def test_error_pages_come_from_the_template(
        stack: Stack, http: aiohttp.ClientSession, method: str, path: str, status: int) -> None:
    kwargs = _request_kwargs(path)
    async with http.request(method, stack.url + path, allow_redirects=False,
                            **kwargs) as response:
        page = await response.text()
    assert response.status == status
    assert response.content_type == "text/html"
    assert f"<h1>{status} · {TITLES[status]}</h1>" in page
    assert '<p class="error-message">' in page
    request_id = response.headers["X-Request-Id"]
    assert f"Request id: <code>{request_id}</code>" in page
    assert '<a href="/">Back to the form</a>' in page
    for leak in LEAKS:
        assert leak not in page
    if status == 405:
        assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/api/snippets/424242", 404),
    ("GET", "/api/no/such/thing", 404),
    ("PATCH", "/api/snippets/1", 405),
    ("POST", "/api/snippets?413", 413),
    ("POST", "/api/snippets?415", 415),
])
async def test_api_errors_are_json(stack: Stack, http: aiohttp.ClientSession, method: str,
                                   path: str, status: int) -> None:
    kwargs = _request_kwargs(path)
    async with http.request(method, stack.url + path, **kwargs) as response:
        body = await response.json()
    assert response.status == status
    assert response.content_type == "application/json"
    assert body["status"] == status
    assert body["error"] and isinstance(body["error"], str)
    assert body["request_id"] == response.headers["X-Request-Id"]


CORRUPT_ID = "c0rrupt-r0w"


def _insert_corrupt_row(stack: Stack) -> str:
    """A public row whose code is not UTF-8, as a damaged database might hold: reading it
    fails (on its page and in the list)."""
    with sqlite3.connect(stack.db_path, timeout=10) as conn:
        conn.execute(
            "INSERT INTO snippets (slug, language, plain_code, status, created_at, updated_at,"
            " visibility) VALUES (?, 'python', CAST(X'FFFE41' AS TEXT), 'highlighted', ?, ?,"
            " 'public')", (CORRUPT_ID, *("2026-01-01T00:00:00.000Z",) * 2))
    return CORRUPT_ID


async def test_an_unexpected_error_is_a_500_page_and_a_logged_traceback(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    snippet_id = _insert_corrupt_row(stack)
    try:
        request_ids = []
        for path in (f"/snippets/{snippet_id}", "/"):  # the snippet, and the recent list
            async with http.get(stack.url + path, headers=HTML) as response:
                page = await response.text()
            assert response.status == 500
            assert response.content_type == "text/html"
            assert "<h1>500 · Something went wrong</h1>" in page
            assert "An unexpected error occurred." in page
            request_id = response.headers["X-Request-Id"]
            assert f"Request id: <code>{request_id}</code>" in page
            for leak in LEAKS:
                assert leak not in page
            request_ids.append(request_id)

        async with http.get(f"{stack.url}/api/snippets/{snippet_id}") as response:
            body = await response.json()
        assert response.status == 500
        assert body == {"error": "An unexpected error occurred.", "status": 500,
                        "request_id": response.headers["X-Request-Id"]}
        request_ids.append(body["request_id"])
    finally:
        with sqlite3.connect(stack.db_path, timeout=10) as conn:
            conn.execute("DELETE FROM snippets WHERE slug = ?", (snippet_id,))

    await until(lambda: all(f"(request id {rid})" in stack.web.log() for rid in request_ids),
                5, "not every request id was logged")
    log = stack.web.log()
    for request_id in request_ids:
        entry = log[log.index(f"(request id {request_id})"):][:8000]
        assert re.match(r"\(request id \w+\)[^\n]*\nTraceback", entry), entry[:500]
        assert "Could not decode to UTF-8" in entry

    async with http.get(f"{stack.url}/") as response:  # and the app is fine afterwards
        assert response.status == 200
