"""``/highlight.css``: the highlighter's own ``GET /style.css``, kept for an hour.

The stylesheet comes from the service that makes the fragments, so a remote
HIGHLIGHTER_URL cannot disagree with it. It is fetched at start (beside the languages),
then again when it is an hour old, or 10 s after a failed fetch; while the highlighter is
unreachable the last copy is served, and with no copy at all the page gets a 503.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

logger = logging.getLogger("snippet_service.web.stylesheet")

MAX_AGE_SECONDS = 3600.0
RETRY_SECONDS = 10.0  # after a failed fetch, the highlighter is asked again this much later
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=3)
MAX_BYTES = 256 * 1024


class StylesheetUnavailable(Exception):
    """The highlighter could not be asked, and no earlier copy is kept."""


class Stylesheet:
    """The cached copy of the highlighter's stylesheet (one per web process)."""

    def __init__(self, session: aiohttp.ClientSession, highlighter_url: str) -> None:
        self._session = session
        self._url = highlighter_url + "style.css"
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
            logger.warning("could not fetch the highlighter's stylesheet (%r)%s", exc,
                           "" if self._css is None else "; serving the copy kept")
            return False
        return True

    def _kept(self) -> str:
        if self._css is None:
            raise StylesheetUnavailable("the highlighter's stylesheet could not be fetched")
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
