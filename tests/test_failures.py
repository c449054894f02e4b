"""The highlighter refusing a snippet ends it `failed` with the reason."""

from __future__ import annotations

import aiohttp

from tests.fake_highlighter import REFUSAL
from tests.helpers import HTML, create_via_form, wait_for_snippet
from tests.servers import Stack


async def test_refused_language_fails_with_the_reason(fake_stack: Stack,
                                                      http: aiohttp.ClientSession) -> None:
    snippet_id = await create_via_form(http, fake_stack.url, "refused", "anything")
    body = await wait_for_snippet(http, fake_stack.url, snippet_id)
    assert body["status"] == "failed", fake_stack.logs()
    assert REFUSAL in body["error"]
    assert body["highlighted_code"] is None

    async with http.get(f"{fake_stack.url}/snippets/{snippet_id}", headers=HTML) as response:
        page = await response.text()
    assert "Highlighting failed" in page
    assert REFUSAL.replace("'", "&#39;") in page
    assert "anything" in page


async def test_other_languages_still_work_with_the_same_highlighter(
        fake_stack: Stack, http: aiohttp.ClientSession) -> None:
    snippet_id = await create_via_form(http, fake_stack.url, "python", "ok = True")
    body = await wait_for_snippet(http, fake_stack.url, snippet_id)
    assert body["status"] == "highlighted"
    assert '<span class="fake">ok = True</span>' in body["highlighted_code"]
