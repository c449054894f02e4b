"""What the pastebin's browser tests share: the viewport, screenshots
(var/screenshots/pastebin-NAME.png), the page's errors and the new-snippet form."""

from __future__ import annotations

import re

from playwright.async_api import ConsoleMessage, Error, Page, ViewportSize, expect

from tests.helpers import SCREENSHOTS

VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


async def shot(page: Page, name: str, full_page: bool = True) -> None:
    """A screenshot: var/screenshots/pastebin-NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"pastebin-{name}.png"), full_page=full_page)


def page_errors(page: Page) -> list[str]:
    """The page's script errors and console errors (a CSP refusal among them), as they come."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    def uncaught(error: Error) -> None:
        errors.append(str(error))

    page.on("console", console)
    page.on("pageerror", uncaught)
    return errors


async def submit(page: Page, base_url: str, code: str, *, title: str = "",
                 language: str = "auto", burn: bool = False) -> str:
    """Fill the new-snippet form on / and save it; the new snippet's id (the page it
    redirects to)."""
    await page.goto(base_url + "/")
    await page.fill("#title", title)
    await page.select_option("#language", language)
    await page.fill("#plain_code", code)
    await page.set_checked("#burn_after_reading", burn)
    await page.get_by_role("button", name="Save snippet").click()
    await expect(page).to_have_url(re.compile(re.escape(base_url) + r"/snippets/[\w-]{10,32}$"))
    return page.url.rsplit("/", 1)[1]
