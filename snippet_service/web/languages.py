"""The languages the highlighter supports, for the form's select and for validation.

The list comes from the highlighter's ``GET /languages``, so that a remote
HIGHLIGHTER_URL and the form agree. At start the web app waits a few seconds for it; if
the highlighter does not answer by then, the app starts with the list of the Pygments
installed beside it, so snippets can still be saved (their highlighting waits in the queue
for the highlighter anyway), and keeps asking in the background until the highlighter's
own list replaces it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from pygments.lexers import get_all_lexers

logger = logging.getLogger("snippet_service.web.languages")

DEFAULT_LANGUAGE = "python"
START_WAIT_SECONDS = 5.0
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)  # then every 5 s
ASK_TIMEOUT = aiohttp.ClientTimeout(total=3)


@dataclass(frozen=True)
class Language:
    name: str
    alias: str


def installed_languages() -> list[dict[str, object]]:
    """The languages of the Pygments installed here, in the highlighter's format."""
    found = [{"name": name, "aliases": list(aliases)}
             for name, aliases, _patterns, _mimetypes in get_all_lexers() if aliases]
    return sorted(found, key=lambda item: str(item["name"]).lower())


class Languages:
    """Language names and the aliases that select them: the installed Pygments' list until
    the highlighter's arrives (``load``)."""

    def __init__(self, items: list[dict[str, object]] | None = None) -> None:
        self.choices: list[Language] = []
        self._aliases: set[str] = set()
        self.known = False  # whether the list is the highlighter's own
        self.load(items or installed_languages())
        self.known = bool(items)

    def load(self, items: list[dict[str, object]]) -> None:
        """Take the highlighter's list (``[{"name": …, "aliases": […]}, …]``)."""
        choices: list[Language] = []
        aliases: set[str] = set()
        for item in items:
            names = [str(alias) for alias in item.get("aliases", []) or []]  # type: ignore[attr-defined]
            if names:
                choices.append(Language(str(item["name"]), names[0]))
                aliases.update(names)
        if not choices:
            raise ValueError("empty language list")
        self.choices, self._aliases, self.known = choices, aliases, True

    def __contains__(self, alias: object) -> bool:
        return alias in self._aliases

    @property
    def default(self) -> str:
        if DEFAULT_LANGUAGE in self or not self.choices:
            return DEFAULT_LANGUAGE
        return self.choices[0].alias


async def fetch_into(languages: Languages, session: aiohttp.ClientSession,
                     highlighter_url: str) -> None:
    """Ask the highlighter once; raise on any failure."""
    async with session.get(highlighter_url + "languages", timeout=ASK_TIMEOUT) as response:
        response.raise_for_status()
        items = await response.json()
    if not isinstance(items, list):
        raise ValueError("the language list is not a JSON array")
    languages.load(items)


async def keep_asking(languages: Languages, session: aiohttp.ClientSession,
                      highlighter_url: str) -> None:
    """Ask until the list arrives, waiting a little longer after each failure."""
    attempt = 0
    while True:
        try:
            await fetch_into(languages, session, highlighter_url)
        except (TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
            if attempt == len(RETRY_SECONDS):  # said once, not every few seconds
                logger.warning("the highlighter's languages are unavailable (%r); using "
                               "the installed Pygments' list until they arrive", exc)
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1
        else:
            if attempt > len(RETRY_SECONDS):
                logger.info("the highlighter's languages arrived")
            return
