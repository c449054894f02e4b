"""``/highlight.css``: the highlighter's own ``GET /style.css``, kept for an hour.

The stylesheet comes from the service that makes the fragments, so a remote
HIGHLIGHTER_URL cannot disagree with it. It is fetched at start (beside the languages),
then again when it is an hour old, or 10 s after a failed fetch; while the highlighter is
unreachable the last copy is served, and with no copy at all the page gets a 503.

``/highlight.css?style=NAME`` is the same for each Pygments style of ``STYLE_CHOICES``
(the highlighter's ``/style.css?style=NAME``, each kept on its own, fetched when first
asked for), and ``auto`` is the default style, or ``DARK_STYLE`` when the browser prefers
a dark colour scheme. Other names are never fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import urlencode

import aiohttp

logger = logging.getLogger("snippet_service.web.stylesheet")

MAX_AGE_SECONDS = 3600.0
RETRY_SECONDS = 10.0  # after a failed fetch, the highlighter is asked again this much later
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=3)
MAX_BYTES = 256 * 1024

AUTO = "auto"  # the default style, or DARK_STYLE under prefers-color-scheme: dark
DARK_STYLE = "github-dark"
# The style picker's choices: (value for ?style=, label); each but AUTO a Pygments style.
STYLE_CHOICES: list[tuple[str, str]] = [
    (AUTO, "Auto (light / dark)"),
    ("default", "Default"),
    ("friendly", "Friendly"),
    ("solarized-light", "Solarized Light"),
    (DARK_STYLE, "GitHub Dark"),
    ("monokai", "Monokai"),
    ("dracula", "Dracula"),
    ("nord", "Nord"),
    ("one-dark", "One Dark"),
]
STYLE_NAMES = frozenset(name for name, _ in STYLE_CHOICES)
# The dark ones among them: the page gives the code box (gutter, line marks) the tone of
# the style picked, whatever the page's own colour scheme.
DARK_STYLES = (DARK_STYLE, "monokai", "dracula", "nord", "one-dark")


class StylesheetUnavailable(Exception):
    """The highlighter could not be asked, and no earlier copy is kept."""


class UnknownStyle(LookupError):
    """A style that is not one of STYLE_CHOICES (never asked of the highlighter)."""


class Stylesheet:
    """The highlighter's stylesheets as one web process keeps them: the default one
    (``get()``) and each of STYLE_CHOICES (``get(name)``)."""

    def __init__(self, session: aiohttp.ClientSession, highlighter_url: str) -> None:
        self._default = KeptStylesheet(session, highlighter_url + "style.css")
        self._styles = {
            name: KeptStylesheet(session, f"{highlighter_url}style.css?"
                                 + urlencode({"style": name}), name)
            for name in STYLE_NAMES - {AUTO}
        }
        self._auto: tuple[str, str, str] | None = None  # (light, dark, the two combined)

    async def get(self, style: str | None = None) -> str:
        """The CSS of the default style, or of one of STYLE_CHOICES: a kept copy while it
        is fresh, else a new one (or the kept one if the highlighter does not answer);
        StylesheetUnavailable when there is none at all, UnknownStyle for another name."""
        if style is None:
            return await self._default.get()
        if style == AUTO:
            return await self._light_and_dark()
        kept = self._styles.get(style)
        if kept is None:
            raise UnknownStyle(f"unknown style {style[:40]!r}")
        return await kept.get()

    async def refresh(self) -> bool:
        """Fetch a new copy of the default stylesheet now; whether it came."""
        return await self._default.refresh()

    async def _light_and_dark(self) -> str:
        """The default style, and DARK_STYLE for browsers preferring a dark scheme (the
        default alone while the dark one cannot be had)."""
        light = await self._default.get()
        try:
            dark = await self._styles[DARK_STYLE].get()
        except StylesheetUnavailable:
            return light
        if self._auto is None or self._auto[0] is not light or self._auto[1] is not dark:
            self._auto = (light, dark, _by_colour_scheme(light, dark))
        return self._auto[2]


def _by_colour_scheme(light: str, dark: str) -> str:
    """Each stylesheet under its own colour scheme, so that no rule of one leaks into the
    other."""
    return (f"/* {AUTO}: the default style, or {DARK_STYLE} in a dark colour scheme */\n"
            f"@media (prefers-color-scheme: light) {{\n{light.rstrip()}\n}}\n"
            f"@media (prefers-color-scheme: dark) {{\n{dark.rstrip()}\n}}\n")


class KeptStylesheet:
    """The kept copy of one of the highlighter's stylesheets."""

    def __init__(self, session: aiohttp.ClientSession, url: str, style: str = "") -> None:
        self._session = session
        self._url = url
        self._what = f"{style!r} stylesheet" if style else "stylesheet"
        self._css: str | None = None
        self._next_fetch = 0.0  # monotonic time after which the highlighter is asked again
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """The CSS: the kept copy while it is fresh, else a new one (or the kept one if the
        highlighter does not answer); StylesheetUnavailable when there is none at all."""
        if time.monotonic() >= self._next_fetch:
            async with self._lock:  # readers arriving together share one fetch
                if time.monotonic() >= self._next_fetch:
                    await self._refresh()
        return self._kept()

    async def refresh(self) -> bool:
        """Fetch a new copy now (whatever the age of the kept one); whether it came."""
        async with self._lock:
            return await self._refresh()

    async def _refresh(self) -> bool:
        try:
            await self.fetch()
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self._next_fetch = time.monotonic() + RETRY_SECONDS
            logger.warning("could not fetch the highlighter's %s (%r)%s", self._what, exc,
                           "" if self._css is None else "; serving the copy kept")
            return False
        return True

    def _kept(self) -> str:
        if self._css is None:
            raise StylesheetUnavailable(f"the highlighter's {self._what} could not be fetched")
        return self._css

    async def fetch(self) -> None:
        """Ask the highlighter once; raise on any failure."""
        async with self._session.get(self._url, timeout=FETCH_TIMEOUT) as response:
            response.raise_for_status()
            if response.content_type != "text/css":
                raise ValueError(f"the stylesheet came as {response.content_type}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise ValueError(f"the stylesheet is over {MAX_BYTES} bytes")
        self._css = body.decode("utf-8")
        self._next_fetch = time.monotonic() + MAX_AGE_SECONDS
