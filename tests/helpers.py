"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

import aiohttp
import psutil
from multidict import CIMultiDict
from playwright.async_api import Page

from snippet_service.web.csrf import COOKIE_NAME, FIELD_NAME

_HIDDEN_TOKEN = re.compile(rf'<input type="hidden" name="{FIELD_NAME}" value="([^"]+)">')

# What a browser's Accept names: GET /snippets/{id} answers the page only then (any other
# client, aiohttp's */* among them, gets the plain code).
HTML = {"Accept": "text/html"}

T = TypeVar("T")
Message = str | Callable[[], str]


def _describe(message: Message, timeout: float) -> str:
    text = message() if callable(message) else message
    return f"not within {timeout:g} s: {text}"


@overload
async def until(condition: Callable[[], Awaitable[T]], timeout: float = ...,
                message: Message = ..., interval: float = ...) -> T: ...


@overload
async def until(condition: Callable[[], T], timeout: float = ...,
                message: Message = ..., interval: float = ...) -> T: ...


async def until(condition: Callable[[], Any], timeout: float = 10.0,
                message: Message = "the condition never held", interval: float = 0.05) -> Any:
    """Call ``condition`` (plain or async) until it returns something truthy; return that.

    Fails the test with ``message`` (a string, or a function called only then, say to add
    a log) when ``timeout`` seconds pass first. The condition is always checked once more
    at the deadline, so a slow machine does not fail a condition that did hold.
    """
    deadline = time.monotonic() + timeout
    while True:
        last = time.monotonic() >= deadline
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if last:
            raise AssertionError(_describe(message, timeout))
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_until(condition: Callable[[], T], timeout: float = 10.0,
               message: Message = "the condition never held", interval: float = 0.05) -> T:
    """``until`` for code outside the event loop (fixtures, plain tests)."""
    deadline = time.monotonic() + timeout
    while True:
        last = time.monotonic() >= deadline
        value = condition()
        if value:
            return value
        if last:
            raise AssertionError(_describe(message, timeout))
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def snippet_json(http: aiohttp.ClientSession, base_url: str,
                       snippet_id: str) -> dict[str, Any]:
    """The snippet as GET /api/snippets/{id} answers it now."""
    async with http.get(f"{base_url}/api/snippets/{snippet_id}") as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
    return body


async def wait_for_snippet(http: aiohttp.ClientSession, base_url: str, snippet_id: str,
                           timeout: float = 15.0) -> dict[str, Any]:
    """The snippet once it is no longer pending (``timeout=0``: as it is now, pending or
    not); fails the test if it is still pending after ``timeout`` seconds."""
    if timeout <= 0:
        return await snippet_json(http, base_url, snippet_id)

    async def finished() -> dict[str, Any] | None:
        body = await snippet_json(http, base_url, snippet_id)
        return body if body["status"] != "pending" else None

    body: dict[str, Any] | None = await until(finished, timeout,
                                              f"snippet {snippet_id} is still pending")
    assert body is not None
    return body


async def form_token(http: aiohttp.ClientSession, base_url: str) -> str:
    """GET the form as a browser would; return its CSRF token (also the cookie's value)."""
    async with http.get(f"{base_url}/", headers=HTML) as response:
        assert response.status == 200, await response.text()
        page = await response.text()
        cookie = response.cookies[COOKIE_NAME].value
    match = _HIDDEN_TOKEN.search(page)
    assert match is not None, page
    assert match.group(1) == cookie
    return cookie


def token_cookie(token: str) -> dict[str, str]:
    """The Cookie header carrying the token (aiohttp's cookie jar ignores 127.0.0.1)."""
    return {"Cookie": f"{COOKIE_NAME}={token}"}


async def post_form(http: aiohttp.ClientSession, base_url: str, fields: dict[str, str],
                    token: str | None = None) -> tuple[int, str, CIMultiDict[str]]:
    """POST the form with the token from GET / (or the one given); status, body, headers."""
    token = token or await form_token(http, base_url)
    async with http.post(f"{base_url}/snippets", data={FIELD_NAME: token, **fields},
                         headers=token_cookie(token), allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.copy()


async def create_via_form(http: aiohttp.ClientSession, base_url: str, language: str,
                          code: str) -> str:
    """GET the form for its token, POST it, and return the new id from the 303 Location."""
    status, page, headers = await post_form(http, base_url,
                                            {"language": language, "plain_code": code})
    assert status == 303, page
    location = headers["Location"]
    assert location.startswith("/snippets/")
    return location.rsplit("/", 1)[1]


async def create_via_api(http: aiohttp.ClientSession, base_url: str, language: str,
                         code: str, **fields: Any) -> dict[str, Any]:
    """POST /api/snippets (``fields``: more of its options, say ``visibility="public"``);
    the answer, with the id and the ``owner_token``."""
    async with http.post(f"{base_url}/api/snippets",
                         json={"language": language, "code": code, **fields}) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
    return body


def owner(created: dict[str, Any]) -> dict[str, str]:
    """The Authorization header of the owner of a snippet ``create_via_api`` made."""
    return {"Authorization": f"Bearer {created['owner_token']}"}


@contextmanager
def peak_rss(pid: int) -> Iterator[list[int]]:
    """Sample a process's resident memory every 10 ms; yields [peak] (updated live)."""
    process = psutil.Process(pid)
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], process.memory_info().rss)


SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"


async def shot(page: Page, name: str) -> None:
    """A whole-page screenshot of a dashboard page: var/screenshots/jobs-NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"jobs-{name}.png"), full_page=True)


def unique(code: str) -> str:
    """Code no other test sends (the stand-in highlighters count calls by code)."""
    return f"{code} # {uuid.uuid4().hex[:8]}"
