"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp


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


async def create_via_form(http: aiohttp.ClientSession, base_url: str, language: str,
                          code: str) -> int:
    """POST the form and return the new id from the 303 Location."""
    async with http.post(f"{base_url}/snippets", data={"language": language, "plain_code": code},
                         allow_redirects=False) as response:
        assert response.status == 303, await response.text()
        location = response.headers["Location"]
    assert location.startswith("/snippets/")
    return int(location.rsplit("/", 1)[1])


async def create_via_api(http: aiohttp.ClientSession, base_url: str, language: str,
                         code: str) -> dict[str, Any]:
    async with http.post(f"{base_url}/api/snippets",
                         json={"language": language, "code": code}) as response:
        assert response.status == 201, await response.text()
        body: dict[str, Any] = await response.json()
    return body
