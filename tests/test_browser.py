"""A real browser: open the form, submit, watch the highlight appear without a reload."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.servers import ROOT, Stack

SCREENSHOTS = ROOT / "var" / "screenshots"
# Without chromium the ``browser`` fixture skips these with the reason, or fails under CI=true.


async def test_submit_and_see_the_highlight_appear_live(stack: Stack, browser: Browser) -> None:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    await page.goto(stack.url + "/")
    await page.select_option("#language", "python")
    await page.fill("#plain_code", "def live(update):\n    return update\n")
    stack.worker and stack.worker.stop()  # hold the job so the page is seen pending first
    try:
        await page.click("button[type=submit]")
        await expect(page.locator(".status-pending")).to_have_text("Highlighting…")
        await expect(page.locator("pre.plain")).to_contain_text("def live(update):")
        await page.evaluate("window.__sameDocument = true")
    finally:
        stack.start_worker()
    await expect(page.locator(".highlight .k").first).to_have_text("def", timeout=10_000)
    await expect(page.locator(".highlight .nf")).to_have_text("live")
    assert await page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert "/snippets/" in page.url
    assert errors == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "snippet.png"), full_page=True)


async def test_invalid_submission_shows_the_message_and_keeps_the_code(
        stack: Stack, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(stack.url + "/")
    await page.fill("#plain_code", "   ")
    await page.evaluate("document.getElementById('plain_code').removeAttribute('required')")
    await page.click("button[type=submit]")
    await expect(page.locator(".errors")).to_contain_text("The code is empty.")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "form-error.png"), full_page=True)
