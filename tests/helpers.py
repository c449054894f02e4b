"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import psutil
from multidict import CIMultiDict

from snippet_service.web.csrf import COOKIE_NAME, FIELD_NAME

_HIDDEN_TOKEN = re.compile(rf'<input type="hidden" name="{FIELD_NAME}" value="([^"]+)">')


async def wait_for_snippet(http: aiohttp.ClientSession, base_url: str, snippet_id: int,
                           timeout: float = 15.0) -> dict[str, Any]:
    """Poll the API until the snippet is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(f"{base_url}/api/snippets/{snippet_id}") as response:
            assert response.status == 200, await response.text()
            body: dict[str, Any] = await response.json()
        if body["status"] != "pending" or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.05)


async def form_token(http: aiohttp.ClientSession, base_url: str) -> str:
    """GET the form as a browser would; return its CSRF token (also the cookie's value)."""
    async with http.get(f"{base_url}/") as response:
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
                          code: str) -> int:
    """GET the form for its token, POST it, and return the new id from the 303 Location."""
    status, page, headers = await post_form(http, base_url,
                                            {"language": language, "plain_code": code})
    assert status == 303, page
    location = headers["Location"]
    assert location.startswith("/snippets/")
    return int(location.rsplit("/", 1)[1])


async def create_via_api(http: aiohttp.ClientSession, base_url: str, language: str,
                         code: str) -> dict[str, Any]:
    async with http.post(f"{base_url}/api/snippets",
                         json={"language": language, "code": code}) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
    return body


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
