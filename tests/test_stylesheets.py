"""The per-style stylesheets the web app keeps (web/stylesheet.py), fetched from a real
highlighter on loopback: each of the picker's styles is the highlighter's
``/style.css?style=NAME``, ``auto`` is the default and the dark style by colour scheme,
other names are never asked for, and the kept copies outlive the highlighter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from pygments.styles import get_all_styles, get_style_by_name

from snippet_service.web import stylesheet
from snippet_service.web.stylesheet import (
    AUTO,
    DARK_STYLE,
    DARK_STYLES,
    STYLE_CHOICES,
    STYLE_NAMES,
    Stylesheet,
    StylesheetUnavailable,
    UnknownStyle,
)
from tests.servers import Process, base_env, python_server


class Highlighter:
    """Our highlighter alone on a free port, which a test may stop."""

    def __init__(self, log_dir: Path) -> None:
        self.process: Process
        self.process, port = python_server("highlighter", ["-m", "snippet_service.highlighter"],
                                           base_env(), log_dir, "HIGHLIGHTER_PORT")
        self.url = f"http://127.0.0.1:{port}/"


@pytest.fixture(scope="module")
def shared_highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Highlighter]:
    highlighter = Highlighter(tmp_path_factory.mktemp("highlighter"))
    yield highlighter
    highlighter.process.stop()


@pytest.fixture
def own_highlighter(tmp_path: Path) -> Iterator[Highlighter]:
    highlighter = Highlighter(tmp_path)
    yield highlighter
    highlighter.process.stop()


@pytest.fixture
async def counted() -> AsyncIterator[tuple[aiohttp.ClientSession, list[str]]]:
    """A client session and the URLs it has asked for."""
    asked: list[str] = []

    async def on_request_start(session: aiohttp.ClientSession, context: SimpleNamespace,
                               params: aiohttp.TraceRequestStartParams) -> None:
        asked.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield session, asked


async def upstream(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        assert (response.status, response.content_type) == (200, "text/css")
        return await response.text()


def test_the_choices_are_installed_styles() -> None:
    installed = set(get_all_styles())
    assert STYLE_CHOICES[0] == (AUTO, "Auto (light / dark)")
    assert STYLE_NAMES - {AUTO} <= installed and DARK_STYLE in STYLE_NAMES
    assert len(STYLE_NAMES) == len(STYLE_CHOICES) >= 6
    assert all(label.strip() for _, label in STYLE_CHOICES)


def luminance(colour: str) -> float:
    """Relative luminance (WCAG) of a #rrggbb colour, 0 (black) to 1 (white)."""
    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4
    red, green, blue = (channel(colour.lstrip("#")[i:i + 2]) for i in (0, 2, 4))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def test_the_dark_styles_are_the_dark_backgrounds() -> None:
    """The code box takes a picked style's tone from DARK_STYLES: it must name exactly the
    choices whose Pygments background is dark."""
    dark = {name for name in STYLE_NAMES - {AUTO}
            if luminance(get_style_by_name(name).background_color) < 0.2}
    assert set(DARK_STYLES) == dark and DARK_STYLE in dark
    assert dark < STYLE_NAMES - {AUTO}  # light ones remain to pick


async def test_each_style_is_the_highlighters(
        shared_highlighter: Highlighter, http: aiohttp.ClientSession,
        counted: tuple[aiohttp.ClientSession, list[str]]) -> None:
    session, asked = counted
    sheets = Stylesheet(session, shared_highlighter.url)
    default = await sheets.get()
    assert default == await upstream(http, shared_highlighter.url + "style.css")
    seen = {default}
    for name in sorted(STYLE_NAMES - {AUTO}):
        css = await sheets.get(name)
        assert css == await upstream(http, f"{shared_highlighter.url}style.css?style={name}")
        assert ".highlight .k" in css
        seen.add(css)
    assert len(seen) == len(STYLE_NAMES) - 1  # each its own ("default" is the default one)
    before = len(asked)
    for name in sorted(STYLE_NAMES - {AUTO}):  # kept: not asked for again
        await sheets.get(name)
    assert len(asked) == before


async def test_auto_is_light_or_dark_by_colour_scheme(
        shared_highlighter: Highlighter, http: aiohttp.ClientSession) -> None:
    sheets = Stylesheet(http, shared_highlighter.url)
    css = await sheets.get(AUTO)
    light, _, dark = css.partition("@media (prefers-color-scheme: dark) {")
    assert (await sheets.get()).rstrip() in light
    assert "@media (prefers-color-scheme: light) {" in light
    assert (await sheets.get(DARK_STYLE)).rstrip() in dark
    assert css.count("{") == css.count("}")
    assert await sheets.get(AUTO) is css  # combined once while both copies stay


@pytest.mark.parametrize("name", ["no-such-style", "vim", "../style.css", "auto ", ""])
async def test_other_names_are_never_fetched(
        shared_highlighter: Highlighter, name: str,
        counted: tuple[aiohttp.ClientSession, list[str]]) -> None:
    session, asked = counted
    sheets = Stylesheet(session, shared_highlighter.url)
    with pytest.raises(UnknownStyle):
        await sheets.get(name)
    assert asked == []


async def test_the_styles_kept_during_an_outage(
        own_highlighter: Highlighter, monkeypatch: pytest.MonkeyPatch,
        counted: tuple[aiohttp.ClientSession, list[str]]) -> None:
    """With every copy due again at once, a highlighter that is gone leaves each kept
    copy served; a style never fetched is unavailable, and asked for again only after
    RETRY_SECONDS."""
    session, asked = counted
    monkeypatch.setattr(stylesheet, "MAX_AGE_SECONDS", 0.0)
    sheets = Stylesheet(session, own_highlighter.url)
    kept = {name: await sheets.get(name) for name in (None, "monokai", AUTO)}
    own_highlighter.process.stop()
    for _ in range(2):
        assert kept == {name: await sheets.get(name) for name in kept}
    with pytest.raises(StylesheetUnavailable, match="'nord' stylesheet"):
        await sheets.get("nord")
    before = len(asked)
    with pytest.raises(StylesheetUnavailable):
        await sheets.get("nord")
    assert len(asked) == before  # within RETRY_SECONDS of the failed fetch


async def test_auto_without_the_dark_style_is_the_default(
        own_highlighter: Highlighter, http: aiohttp.ClientSession) -> None:
    sheets = Stylesheet(http, own_highlighter.url)
    default = await sheets.get()
    own_highlighter.process.stop()
    assert await sheets.get(AUTO) == default


async def test_readers_arriving_together_share_one_fetch(
        shared_highlighter: Highlighter,
        counted: tuple[aiohttp.ClientSession, list[str]]) -> None:
    session, asked = counted
    sheets = Stylesheet(session, shared_highlighter.url)
    answers = await asyncio.gather(*(sheets.get("dracula") for _ in range(10)))
    assert len(set(answers)) == 1 and len(asked) == 1
