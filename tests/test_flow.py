"""A snippet from the form through a real worker to the highlighted page and API, on each
backend."""

from __future__ import annotations

import json

import aiohttp
import pytest

from tests.helpers import HTML, create_via_api, create_via_form, wait_for_snippet
from tests.servers import Stack

pytestmark = pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL

CODE = 'def greet(name):\n    return f"hello {name}" # <b>not bold</b>\n'


async def test_form_post_is_highlighted_by_the_worker(stack: Stack,
                                                      http: aiohttp.ClientSession) -> None:
    snippet_id = await create_via_form(http, stack.url, "python", CODE)

    body = await wait_for_snippet(http, stack.url, snippet_id)
    assert body["status"] == "highlighted", stack.logs()
    assert '<span class="k">def</span>' in body["highlighted_code"]
    assert '<span class="nf">greet</span>' in body["highlighted_code"]
    assert body["error"] is None

    async with http.get(f"{stack.url}/snippets/{snippet_id}", headers=HTML) as response:
        page = await response.text()
    assert response.status == 200
    assert '<div class="highlight">' in page
    assert '<span class="k">def</span>' in page
    assert "<b>not bold</b>" not in page
    assert "Highlighting…" not in page


async def test_pending_page_shows_escaped_plain_code_and_state(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    stack.worker and stack.worker.stop()
    try:
        snippet_id = await create_via_form(http, stack.url, "python", CODE)
        async with http.get(f"{stack.url}/snippets/{snippet_id}", headers=HTML) as response:
            page = await response.text()
        assert "Highlighting…" in page
        assert "&lt;b&gt;not bold&lt;/b&gt;" in page
        assert "data-events-url" in page
    finally:
        stack.start_worker()
    body = await wait_for_snippet(http, stack.url, snippet_id)
    assert body["status"] == "highlighted", stack.logs()


async def test_raw_is_the_exact_code(stack: Stack, http: aiohttp.ClientSession) -> None:
    code = "tabs\tand unicode: żółw 🐢\n\n  trailing spaces  \n"
    body = await create_via_api(http, stack.url, "text", code)
    async with http.get(f"{stack.url}{body['urls']['raw']}") as response:
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert await response.read() == code.encode()


async def test_api_create_and_read(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{stack.url}/api/snippets",
                         json={"language": "rust", "code": "fn main() {}"}) as response:
        assert response.status == 201
        created = await response.json()
        assert response.headers["Location"] == f"/api/snippets/{created['id']}"
    assert created["status"] == "pending"
    assert created["urls"]["html"] == f"/snippets/{created['id']}"
    assert created["code"] == "fn main() {}"

    body = await wait_for_snippet(http, stack.url, created["id"])
    assert body["status"] == "highlighted"
    assert '<span class="k">fn</span>' in body["highlighted_code"]
    for key in ("id", "language", "status", "highlighted_code", "error", "created_at",
                "updated_at"):
        assert key in body
    assert body["updated_at"] >= body["created_at"]


async def test_live_update_stream_delivers_the_highlight(stack: Stack,
                                                         http: aiohttp.ClientSession) -> None:
    stack.worker and stack.worker.stop()
    try:
        snippet_id = await create_via_form(http, stack.url, "python", "x = 1\n")
        async with http.get(f"{stack.url}/snippets/{snippet_id}/events") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            stack.start_worker()
            stream = (await response.read()).decode()
    finally:
        if stack.worker is None or stack.worker.popen.poll() is not None:
            stack.start_worker()
    event, data = stream.strip().split("\n")
    assert event == "event: done"
    assert json.loads(data.removeprefix("data: ")) == {"status": "highlighted"}
    async with http.get(f"{stack.url}/snippets/{snippet_id}/code") as response:
        code = await response.text()
    assert "status status-highlighted" in code
    assert '<span class="n">x</span>' in code


async def test_home_page_lists_languages_and_recent_snippets(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    created = await create_via_api(http, stack.url, "python", "print('recent one')",
                                   visibility="public")
    async with http.get(f"{stack.url}/", headers=HTML) as response:
        page = await response.text()
    assert '<option value="auto" selected>Auto-detect</option>' in page
    assert '<option value="python">Python</option>' in page
    assert '<option value="rust">Rust</option>' in page
    assert f'href="/snippets/{created["id"]}"' in page
    assert "print(&#39;recent one&#39;)" in page
