"""The pastebin's reading side in a real browser (Debian's chromium): line links both ways
(with and without scripts), copying with clipboard permission, the download, language
detection and "Highlight as", the dark theme and the style picker. Screenshots of the key
moments go to var/screenshots/pastebin-*.png. The owner's side (edit, delete, fork, burn
after reading) is in test_pastebin_browser_owner.py."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
)

from tests.helpers import create_via_api, snippet_json, wait_for_snippet
from tests.pastebin_pages import VIEWPORT, page_errors, shot, submit
from tests.servers import Stack

MARK = "rgba(255, 213, 0, 0.28)"  # site.css --mark: a marked line's band, light scheme
CLEAR = "rgba(0, 0, 0, 0)"
LIGHT_BODY, DARK_BODY = "rgb(250, 250, 250)", "rgb(13, 17, 23)"
MONOKAI_BACKGROUND = "rgb(39, 40, 34)"  # #272822
LIGHT_GUTTER, DARK_GUTTER = "rgb(246, 248, 250)", "rgb(22, 27, 34)"  # site.css


async def highlighted(http: aiohttp.ClientSession, stack: Stack, code: str,
                      language: str = "python", **fields: object) -> str:
    """A snippet made through the API, once highlighted; its id."""
    ident: str = (await create_via_api(http, stack.url, language, code, **fields))["id"]
    assert (await wait_for_snippet(http, stack.url, ident))["status"] == "highlighted"
    return ident


def letters(n: int) -> str:
    """Line n's name: aa, ba, …, za, ab, … (no digits)."""
    return chr(97 + (n - 1) % 26) + chr(97 + (n - 1) // 26)


def digitless_code(lines: int) -> str:
    """Python without a digit: on the code view the line numbers are the only digits."""
    return "".join(f"name_{letters(n)} = '{letters(n)}'\n" for n in range(1, lines + 1))


async def marked_lines(page: Page) -> list[str]:
    """The ids of the gutter's marked line links (class ``selected``)."""
    ids: list[str] = await page.locator(".gutter .ln.selected").evaluate_all(
        "links => links.map(link => link.id)")
    return ids


async def band(link: Locator) -> str:
    """The background of a line link's mark band (its ::after)."""
    colour: str = await link.evaluate(
        "link => getComputedStyle(link, '::after').backgroundColor")
    return colour


def lines(first: int, last: int) -> list[str]:
    """The ids of the line links first..last."""
    return [f"L{n}" for n in range(first, last + 1)]


async def test_line_links_from_clicks_to_the_address_and_back(
        stack: Stack, browser: Browser, http: aiohttp.ClientSession) -> None:
    code = digitless_code(40)
    url = f"{stack.url}/snippets/{await highlighted(http, stack, code)}"
    page = await browser.new_page(viewport=VIEWPORT)
    errors = page_errors(page)
    await page.goto(url)
    await page.click("#L3")
    await expect(page).to_have_url(url + "#L3")
    assert await marked_lines(page) == ["L3"]
    await page.click("#L7", modifiers=["Shift"])
    await expect(page).to_have_url(url + "#L3-L7")
    assert await marked_lines(page) == lines(3, 7)
    assert await band(page.locator("#L5")) == MARK
    assert await band(page.locator("#L8")) == CLEAR
    await shot(page, "lines-range")

    # The other way: an address naming lines marks them and scrolls there.
    opened = await browser.new_page(viewport={"width": 1280, "height": 360})
    errors += page_errors(opened)
    await opened.goto(url + "#L10-L12")
    await expect(opened.locator("#L12")).to_have_class(re.compile(r"\bselected\b"))
    assert await marked_lines(opened) == lines(10, 12)
    assert await opened.evaluate("window.scrollY") > 0
    await expect(opened.locator("#L10")).to_be_in_viewport()
    await expect(opened.locator("#L12")).to_be_in_viewport()
    await shot(opened, "lines-opened", full_page=False)
    await opened.evaluate("window.location.hash = '#L30'")  # a new address in the page
    await expect(opened.locator("#L30")).to_have_class(re.compile(r"\bselected\b"))
    assert await marked_lines(opened) == ["L30"]
    await opened.click("#L33", modifiers=["Shift"])  # extends from the address's line
    await expect(opened).to_have_url(url + "#L30-L33")
    assert await marked_lines(opened) == lines(30, 33)

    # Selecting by hand from above the code to its end takes the code, not the numbers.
    await page.set_viewport_size({"width": 1280, "height": 1400})  # all of it in view
    bar = await page.locator(".code-toolbar").bounding_box()
    code_box = await page.locator("#snippet-body .code pre").bounding_box()
    assert bar is not None and code_box is not None
    await page.mouse.move(bar["x"] + bar["width"] / 2, bar["y"] + bar["height"] / 2)
    await page.mouse.down()
    await page.mouse.move(code_box["x"] + code_box["width"] - 2,
                          code_box["y"] + code_box["height"] - 4, steps=8)
    await page.mouse.up()
    selected: str = await page.evaluate("window.getSelection().toString()")
    assert "name_aa = 'aa'" in selected and "name_nb = 'nb'" in selected, selected
    assert not re.search(r"\d", selected), selected  # the code has none; the gutter does
    await page.keyboard.press("Control+a")
    everything: str = await page.evaluate("window.getSelection().toString()")
    assert "name_nb = 'nb'" in everything and "\n".join(map(str, range(1, 6))) not in everything
    assert errors == []


async def test_a_line_address_marks_the_line_without_scripts(
        stack: Stack, browser: Browser, http: aiohttp.ClientSession) -> None:
    url = f"{stack.url}/snippets/{await highlighted(http, stack, digitless_code(40))}"
    context = await browser.new_context(java_script_enabled=False, viewport=VIEWPORT)
    page = await context.new_page()
    await page.goto(url + "#L5")
    assert await page.locator("#L5").evaluate("link => link.matches(':target')")
    assert await band(page.locator("#L5")) == MARK
    assert await band(page.locator("#L4")) == CLEAR
    await expect(page.locator("#code-view")).not_to_have_class(re.compile("js-lines"))
    await expect(page.locator("#copy-code")).to_be_hidden()  # it would need a script
    await shot(page, "lines-no-script")
    low = await context.new_page()  # a line below the fold: the browser scrolls to it
    await low.set_viewport_size({"width": 1280, "height": 360})
    await low.goto(url + "#L30")
    assert await low.locator("#L30").evaluate("link => link.matches(':target')")
    assert await band(low.locator("#L30")) == MARK
    assert await low.evaluate("window.scrollY") > 0
    await expect(low.locator("#L30")).to_be_in_viewport()
    await shot(low, "lines-no-script-scrolled", full_page=False)
    await context.close()


async def test_copy_and_copy_link(stack: Stack, browser: Browser,
                                  http: aiohttp.ClientSession) -> None:
    code = "greeting = 'héllo wörld'\r\narrow = '→ 世界 🐍'\nthird = 3\nfourth = 4\nfifth = 5\n"
    ident = await highlighted(http, stack, code)
    assert (await snippet_json(http, stack.url, ident))["code"] == code  # CRLF kept
    url = f"{stack.url}/snippets/{ident}"
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"],
                                        viewport=VIEWPORT)
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(url)
    await page.get_by_role("button", name="Copy", exact=True).click()
    await expect(page.locator("#copy-status")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == code
    await shot(page, "copied")
    await page.click("#L2")
    await page.click("#L4", modifiers=["Shift"])
    await page.get_by_role("button", name="Copy link").click()
    await expect(page.locator("#copy-status")).to_have_text("Copied link")
    assert await page.evaluate("navigator.clipboard.readText()") == url + "#L2-L4"
    await shot(page, "copied-link")
    assert errors == []
    await context.close()


async def test_download_gives_the_exact_bytes(stack: Stack, browser: Browser,
                                              http: aiohttp.ClientSession) -> None:
    code = "print('naïve café')\r\nprint('≠')\n"
    titled = await highlighted(http, stack, code, title="greet.py")
    untitled = await highlighted(http, stack, code)
    page = await browser.new_page(viewport=VIEWPORT)
    for ident, filename in ((titled, "greet.py"), (untitled, f"snippet-{untitled}.py")):
        await page.goto(f"{stack.url}/snippets/{ident}")
        async with page.expect_download() as info:
            await page.locator(".code-toolbar").get_by_role("link", name="Download").click()
        download = await info.value
        assert download.suggested_filename == filename
        assert Path(await download.path()).read_bytes() == code.encode("utf-8")
    await shot(page, "download")


async def test_detected_languages_and_highlight_as(stack: Stack, browser: Browser,
                                                   http: aiohttp.ClientSession) -> None:
    page = await browser.new_page(viewport=VIEWPORT)
    errors = page_errors(page)
    language = page.locator(".snippet-meta .language")
    await submit(page, stack.url, 'class Tool\n  def run\n    puts "hi"\n  end\nend\n',
                 title="tool.rb")
    await expect(language).to_have_text("Ruby (detected)")
    await shot(page, "detected-ruby")

    code = "#!/usr/bin/env python3\nimport sys\n\nprint(sys.argv)\n"
    ident = await submit(page, stack.url, code)
    await expect(language).to_have_text("Python (detected)")
    await expect(page.locator(".status-highlighted")).to_be_visible(timeout=10_000)
    as_python = await page.locator("#snippet-body .highlight").inner_html()
    assert 'class="kn"' in as_python  # import: a Python keyword
    await shot(page, "detected-python")

    # The owner highlights it as another language.
    await page.select_option("#highlight-language", "bash")
    await page.get_by_role("button", name="Change").click()
    await expect(language).to_have_text("Bash")
    await expect(page.locator(".status-highlighted")).to_be_visible(timeout=10_000)
    assert await page.locator("#snippet-body .highlight").inner_html() != as_python
    await expect(page.locator("#snippet-body .highlight")).to_contain_text("print(sys.argv)")
    stored = await snippet_json(http, stack.url, ident)
    assert (stored["language"], stored["detected"]) == ("bash", False)
    await shot(page, "highlight-as-bash")
    assert errors == []


async def colours(context: BrowserContext, url: str) -> tuple[str, str]:
    """The page's background and a highlighted keyword's colour, as computed."""
    page = await context.new_page()
    await page.goto(url)
    body: str = await page.evaluate("getComputedStyle(document.body).backgroundColor")
    keyword: str = await page.locator(".highlight .k").first.evaluate(
        "word => getComputedStyle(word).color")
    return body, keyword


async def test_dark_theme_follows_the_colour_scheme(
        stack: Stack, browser: Browser, http: aiohttp.ClientSession) -> None:
    ident = await highlighted(http, stack, "def dark():\n    pass\n")
    url = f"{stack.url}/snippets/{ident}"
    light = await browser.new_context(color_scheme="light", viewport=VIEWPORT)
    dark = await browser.new_context(color_scheme="dark", viewport=VIEWPORT)
    light_body, light_keyword = await colours(light, url)
    dark_body, dark_keyword = await colours(dark, url)
    assert (light_body, light_keyword) == (LIGHT_BODY, "rgb(0, 128, 0)")  # Pygments default
    assert (dark_body, dark_keyword) == (DARK_BODY, "rgb(255, 123, 114)")  # github-dark
    await shot(light.pages[0], "theme-light")
    await shot(dark.pages[0], "theme-dark")
    await light.close()
    await dark.close()


async def highlight_colours(page: Page) -> tuple[str, str]:
    """The code's background and a keyword's colour."""
    found: list[str] = await page.evaluate("""() => [
        getComputedStyle(document.querySelector('.highlight')).backgroundColor,
        getComputedStyle(document.querySelector('.highlight .k')).color]""")
    return found[0], found[1]


async def wait_for_background(page: Page, colour: str) -> None:
    """Until the code's background is ``colour`` (a new stylesheet loads on its own time)."""
    await page.wait_for_function(
        "colour => getComputedStyle(document.querySelector('.highlight')).backgroundColor"
        " === colour", arg=colour, timeout=10_000)


async def gutter_background(page: Page) -> str:
    """The line-number gutter's background."""
    found: str = await page.locator(".code-view .gutter").evaluate(
        "gutter => getComputedStyle(gutter).backgroundColor")
    return found


async def stylesheets(page: Page) -> list[str]:
    """Where the page's highlight stylesheet links point."""
    hrefs: list[str] = await page.locator("link.highlight-css").evaluate_all(
        "links => links.map(link => link.getAttribute('href'))")
    return hrefs


async def test_style_picker_is_remembered(stack: Stack, browser: Browser,
                                          http: aiohttp.ClientSession) -> None:
    first = await highlighted(http, stack, "def styled():\n    return True\n")
    second = await highlighted(http, stack, "class Other:\n    pass\n")
    context = await browser.new_context(color_scheme="light", viewport=VIEWPORT)
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{stack.url}/snippets/{first}")
    picker = page.locator("#style-picker")
    await expect(picker).to_have_value("auto")
    default = await highlight_colours(page)
    assert default == ("rgb(248, 248, 248)", "rgb(0, 128, 0)")
    await shot(page, "style-auto")

    await picker.select_option("monokai")
    assert await stylesheets(page) == ["/highlight.css?style=monokai"] * 2
    await wait_for_background(page, MONOKAI_BACKGROUND)
    assert await highlight_colours(page) == (MONOKAI_BACKGROUND, "rgb(102, 217, 239)")
    assert await gutter_background(page) == DARK_GUTTER  # the style's tone, not the page's
    await shot(page, "style-monokai")

    await page.reload()  # remembered in this browser, with no server round trip
    await expect(picker).to_have_value("monokai")
    assert await page.evaluate("localStorage.getItem('snippet-style')") == "monokai"
    await wait_for_background(page, MONOKAI_BACKGROUND)
    assert await highlight_colours(page) == (MONOKAI_BACKGROUND, "rgb(102, 217, 239)")
    other = await context.new_page()
    await other.goto(f"{stack.url}/snippets/{second}")
    await expect(other.locator("#style-picker")).to_have_value("monokai")
    await wait_for_background(other, MONOKAI_BACKGROUND)
    assert await highlight_colours(other) == (MONOKAI_BACKGROUND, "rgb(102, 217, 239)")
    await shot(other, "style-monokai-other")

    await picker.select_option("auto")
    assert await stylesheets(page) == ["/highlight.css", "/highlight.css?style=github-dark"]
    await wait_for_background(page, default[0])
    assert await highlight_colours(page) == default
    assert await gutter_background(page) == LIGHT_GUTTER
    assert await page.evaluate("localStorage.getItem('snippet-style')") is None
    assert errors == []
    await context.close()

    # A light style in a dark page: the code box is light throughout, gutter included.
    context = await browser.new_context(color_scheme="dark", viewport=VIEWPORT)
    page = await context.new_page()
    errors = page_errors(page)
    await page.goto(f"{stack.url}/snippets/{first}")
    assert await gutter_background(page) == DARK_GUTTER
    await page.locator("#style-picker").select_option("default")
    await wait_for_background(page, default[0])
    assert await highlight_colours(page) == default
    assert await gutter_background(page) == LIGHT_GUTTER
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == DARK_BODY
    await shot(page, "style-default-dark-page")
    assert errors == []
    await context.close()
