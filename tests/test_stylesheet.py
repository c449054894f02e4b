"""What the web app takes from the highlighter: ``/highlight.css`` is the highlighter's
``/style.css`` (kept by the web app), and the form's languages are the highlighter's; the
web app never imports the highlighter module."""

from __future__ import annotations

import ast
from pathlib import Path

import aiohttp
import pytest

from snippet_service.valkey import free_port
from snippet_service.web.languages import Languages
from tests.conftest import MakeStack
from tests.helpers import create_via_api, until, wait_for_snippet
from tests.servers import ROOT, Stack, base_env, python

WEB = ROOT / "snippet_service" / "web"


async def text(http: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with http.get(url) as response:
        return response.status, response.content_type, await response.text()


async def test_highlight_css_is_the_highlighters_stylesheet(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    status, content_type, css = await text(http, f"{stack.url}/highlight.css")
    assert (status, content_type) == (200, "text/css")
    assert (200, "text/css", css) == await text(http, stack.highlighter_url + "style.css")
    assert ".highlight .k" in css


@pytest.mark.parametrize(("style", "status"), [("monokai", 200), ("no-such-style", 404)])
async def test_the_highlighter_serves_other_styles(
        stack: Stack, http: aiohttp.ClientSession, style: str, status: int) -> None:
    answer, _, css = await text(http, f"{stack.highlighter_url}style.css?style={style}")
    assert answer == status
    if status == 200:
        _, _, default = await text(http, stack.highlighter_url + "style.css")
        assert ".highlight .k" in css and css != default


async def test_the_stylesheet_is_kept_when_the_highlighter_goes(
        make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    stack = make_stack()
    _, _, served = await text(http, stack.highlighter_url + "style.css")
    stack.highlighter.stop()
    for _ in range(2):
        assert (200, "text/css", served) == await text(http, f"{stack.url}/highlight.css")


async def test_a_web_app_started_before_the_highlighter(
        make_stack: MakeStack, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    """The form answers at once and snippets are saved (pending) with the installed
    Pygments' languages; the stylesheet is a clear 503 until the highlighter answers; once
    it is up, the snippet saved meanwhile is highlighted and the stylesheet served."""
    port = free_port()
    stack = make_stack(highlighter_url=f"http://127.0.0.1:{port}/", RETRY_DELAY_SCALE="0.01")
    async with http.get(f"{stack.url}/") as response:
        assert response.status == 200
    status, content_type, css = await text(http, f"{stack.url}/highlight.css")
    assert (status, content_type) == (503, "text/css") and css.startswith("/*")
    early = await create_via_api(http, stack.url, "python", "x = 1\n")
    assert early["status"] == "pending"

    highlighter = python("late-highlighter", ["-m", "snippet_service.highlighter"],
                         base_env(HIGHLIGHTER_PORT=str(port)), tmp_path)
    try:
        async def css_served() -> bool:
            return (await text(http, f"{stack.url}/highlight.css"))[0] == 200

        await until(css_served, 30, lambda: stack.logs() + highlighter.log())
        saved_meanwhile = await wait_for_snippet(http, stack.url, early["id"], 30)
        assert saved_meanwhile["status"] == "highlighted"
    finally:
        highlighter.stop()


def test_languages_before_and_after_the_list_arrives() -> None:
    languages = Languages()  # the installed Pygments' list until the highlighter's arrives
    assert not languages.known and "python" in languages and languages.default == "python"
    languages.load([{"name": "Ruby", "aliases": ["ruby", "rb"]}, {"name": "None", "aliases": []}])
    assert languages.known and [c.alias for c in languages.choices] == ["ruby"]
    assert "rb" in languages and languages.default == "ruby"
    with pytest.raises(ValueError):
        languages.load([])


def test_nothing_in_the_web_app_imports_the_highlighter() -> None:
    offending = []
    for path in sorted(WEB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            offending += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names
                          if name.startswith(("snippet_service.highlighter",
                                              "snippet_service.renderpool"))]
    assert offending == []
