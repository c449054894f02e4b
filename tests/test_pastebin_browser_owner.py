"""The pastebin's owner side in a real browser (Debian's chromium), each visitor a browser
context of its own: the creator's Edit and Delete and a stranger's 403, a stranger's fork,
and burn after reading seen by a second and a third visitor. Screenshots go to
var/screenshots/pastebin-*.png."""

from __future__ import annotations

import re

import aiohttp
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.helpers import create_via_api, snippet_json
from tests.pastebin_pages import VIEWPORT, page_errors, shot, submit
from tests.servers import Stack

NEW_PAGE = r"/snippets/[\w-]{10,32}$"


async def visitor(browser: Browser) -> tuple[BrowserContext, Page]:
    """A browser of its own (its own cookies): a new context and a page in it."""
    context = await browser.new_context(viewport=VIEWPORT)
    return context, await context.new_page()


async def status_of(page: Page, url: str) -> int:
    """Open ``url`` in the page; the answer's status."""
    response = await page.goto(url)
    assert response is not None
    return response.status


async def save_form(page: Page, base_url: str) -> str:
    """Save the form on the page; the new snippet's id."""
    await page.get_by_role("button", name="Save snippet").click()
    await expect(page).to_have_url(re.compile(re.escape(base_url) + NEW_PAGE))
    return page.url.rsplit("/", 1)[1]


async def test_the_owner_edits_and_deletes_and_a_stranger_gets_403(
        stack: Stack, browser: Browser) -> None:
    owner, page = await visitor(browser)
    stranger, other = await visitor(browser)
    errors = page_errors(page)
    code = "def owned():\n    return 'mine'\n"
    ident = await submit(page, stack.url, code, title="owned.py", language="python")
    url = f"{stack.url}/snippets/{ident}"
    await expect(page.get_by_role("link", name="Edit")).to_be_visible()
    await expect(page.get_by_role("button", name="Delete")).to_be_visible()
    await shot(page, "owner-view")

    # A stranger sees neither, and the edit form is refused.
    await other.goto(url)
    await expect(other.locator("h1")).to_have_text("owned.py")
    await expect(other.get_by_role("link", name="Edit")).to_have_count(0)
    await expect(other.get_by_role("button", name="Delete")).to_have_count(0)
    await expect(other.locator(".owner-actions")).to_have_count(0)
    await shot(other, "stranger-view")
    assert await status_of(other, url + "/edit") == 403
    await expect(other.locator("h1")).to_contain_text("403")
    await expect(other.locator(".error-message")).to_contain_text("Only the snippet's owner")
    await shot(other, "stranger-edit-403")

    # Edit: the form pre-filled; saving makes a new snippet linked to this one.
    await page.get_by_role("link", name="Edit").click()
    await expect(page).to_have_url(url + "/edit")
    await expect(page.locator("h1")).to_have_text(f"Edit snippet {ident}")
    await expect(page.locator("#plain_code")).to_have_value(code)
    await expect(page.locator("#title")).to_have_value("owned.py")
    await expect(page.locator("#language")).to_have_value("python")
    await shot(page, "edit-form")
    await page.fill("#plain_code", code.replace("'mine'", "'edited'"))
    edited = await save_form(page, stack.url)
    assert edited != ident
    parent = page.locator(".snippet-meta .parent")
    await expect(parent).to_have_text(f"Forked from {ident}")
    await expect(parent.get_by_role("link")).to_have_attribute("href", f"/snippets/{ident}")
    await expect(page.locator("#snippet-body")).to_contain_text("return 'edited'")
    await expect(page.get_by_role("link", name="Edit")).to_be_visible()  # it owns this one too
    await shot(page, "edited")

    # Delete the original: gone for everyone.
    await parent.get_by_role("link").click()
    await expect(page.locator("#snippet-body")).to_contain_text("return 'mine'")
    await page.get_by_role("button", name="Delete").click()
    await expect(page).to_have_url(f"{stack.url}/?deleted={ident}")
    await expect(page.locator(".notice")).to_have_text(f"Snippet {ident} was deleted.")
    await shot(page, "deleted")
    assert errors == []  # (a 404 below is a console error too)
    assert await status_of(page, url) == 404
    assert await status_of(other, url) == 404
    await shot(other, "deleted-404")
    assert await status_of(page, f"{stack.url}/snippets/{edited}") == 200
    await owner.close()
    await stranger.close()


async def test_a_stranger_forks_a_snippet(stack: Stack, browser: Browser,
                                          http: aiohttp.ClientSession) -> None:
    code = "def shared():\n    return 'original'\n"
    ident = (await create_via_api(http, stack.url, "python", code, title="shared.py"))["id"]
    stranger, page = await visitor(browser)
    errors = page_errors(page)
    await page.goto(f"{stack.url}/snippets/{ident}")
    await expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    await page.get_by_role("link", name="Fork").click()
    await expect(page).to_have_url(f"{stack.url}/snippets/{ident}/fork")
    await expect(page.locator("h1")).to_have_text(f"Fork snippet {ident}")
    await expect(page.locator("#plain_code")).to_have_value(code)
    await expect(page.locator("#title")).to_have_value("shared.py")
    await page.fill("#plain_code", code.replace("'original'", "'forked'"))
    await shot(page, "fork-form")
    fork = await save_form(page, stack.url)
    assert fork != ident
    await expect(page.locator(".snippet-meta .parent")).to_have_text(f"Forked from {ident}")
    await expect(page.locator("#snippet-body")).to_contain_text("return 'forked'")
    await expect(page.get_by_role("link", name="Edit")).to_be_visible()  # the fork is its own
    await shot(page, "forked")

    await page.locator(".snippet-meta .parent").get_by_role("link").click()
    await expect(page).to_have_url(f"{stack.url}/snippets/{ident}")
    await expect(page.locator("#snippet-body")).to_contain_text("return 'original'")
    await expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    assert (await snippet_json(http, stack.url, ident))["code"] == code
    assert (await snippet_json(http, stack.url, fork))["parent_id"] == ident
    assert errors == []
    await stranger.close()


async def test_burn_after_reading_from_another_browser(stack: Stack, browser: Browser) -> None:
    creator, page = await visitor(browser)
    code = "secret = 'read me once'\n"
    ident = await submit(page, stack.url, code, language="python", burn=True)
    url = f"{stack.url}/snippets/{ident}"
    notice = "This snippet will be deleted after its first view by someone else."
    await expect(page.locator(".burn-notice")).to_have_text(notice)
    await expect(page.locator("#snippet-body")).to_contain_text("read me once")
    await page.reload()  # the creator's own views do not count
    await expect(page.locator("#snippet-body")).to_contain_text("read me once")
    await shot(page, "burn-creator")

    reader, other = await visitor(browser)
    errors = page_errors(other)
    await other.goto(url)
    await expect(other.locator(".burn-warning")).to_contain_text(
        "This snippet will be deleted after you view it.")
    await expect(other.locator("#code-view")).to_have_count(0)
    assert "read me once" not in await other.content()
    await shot(other, "burn-warning")
    await other.get_by_role("button", name="Show it").click()
    await expect(other.locator("#snippet-body")).to_contain_text("read me once")
    await expect(other.locator(".burn-notice.burned")).to_be_visible()
    await shot(other, "burn-read")
    assert errors == []

    assert await status_of(other, url) == 404
    third, last = await visitor(browser)
    assert await status_of(last, url) == 404
    await shot(last, "burn-gone")
    assert await status_of(page, url) == 404
    for context in (creator, reader, third):
        await context.close()
