"""In a real browser: a form on another site cannot create a snippet, and a highlighter's
hostile markup never runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, expect

from snippet_service.valkey import free_port
from snippet_service.web.csrf import CROSS_SITE
from tests.conftest import row_count
from tests.fake_highlighter import HOSTILE
from tests.helpers import create_via_api, wait_for_snippet
from tests.servers import Stack


@pytest.fixture
async def attacker(stack: Stack) -> AsyncIterator[str]:
    """Another site (localhost, where the app is 127.0.0.1) with a form aimed at ours."""
    page = f"""<!doctype html><title>win a prize</title>
<form method="post" action="{stack.url}/snippets">
  <input type="hidden" name="csrf_token" value="{"A" * 43}">
  <input type="hidden" name="language" value="python">
  <input type="hidden" name="plain_code" value="planted = True">
  <button type="submit">Claim</button>
</form>"""

    async def form(request: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", form)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://localhost:{port}/"
    await runner.cleanup()


async def test_a_form_on_another_site_cannot_create_a_snippet(
        stack: Stack, browser: Browser, attacker: str) -> None:
    page = await browser.new_page()
    await page.goto(stack.url + "/")  # the victim has our token cookie
    rows = row_count(stack.db_path)
    await page.goto(attacker)
    async with page.expect_response(f"{stack.url}/snippets") as answer:
        await page.click("button[type=submit]")
    response = await answer.value
    assert response.status == 403
    request_headers = await response.request.all_headers()
    assert request_headers["sec-fetch-site"] == "cross-site"
    await expect(page.locator(".error-message")).to_have_text(CROSS_SITE)
    assert row_count(stack.db_path) == rows


async def test_hostile_highlighter_markup_never_runs(fake_stack: Stack,
                                                     browser: Browser) -> None:
    async with aiohttp.ClientSession() as http:
        ids = []
        for name in sorted(HOSTILE):
            created = await create_via_api(http, fake_stack.url, "python", f"__{name}__")
            body = await wait_for_snippet(http, fake_stack.url, created["id"])
            assert body["status"] == "highlighted"
            ids.append(created["id"])
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    for snippet_id in ids:
        await page.goto(f"{fake_stack.url}/snippets/{snippet_id}")
        await expect(page.locator(".status-highlighted")).to_be_visible()
        body = page.locator("#snippet-body")
        for selector in ("script", "img", "svg", "style", "a", "[onerror]", "[onmouseover]",
                         "[style]", "iframe"):
            assert await body.locator(selector).count() == 0, (snippet_id, selector)
        await expect(page.locator("header.top")).to_be_visible()  # no style hid the page
    assert dialogs == []
