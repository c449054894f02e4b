"""The languages the highlighter supports, for the form's select and for validation."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp

logger = logging.getLogger("snippet_service.web.languages")

DEFAULT_LANGUAGE = "python"


@dataclass(frozen=True)
class Language:
    name: str
    alias: str


class Languages:
    """Language names and the aliases that select them."""

    def __init__(self, items: list[dict[str, object]]) -> None:
        self.choices: list[Language] = []
        self._aliases: set[str] = set()
        for item in items:
            aliases = [str(alias) for alias in item.get("aliases", []) or []]  # type: ignore[attr-defined]
            if aliases:
                self.choices.append(Language(str(item["name"]), aliases[0]))
                self._aliases.update(aliases)

    def __contains__(self, alias: object) -> bool:
        return alias in self._aliases

    @property
    def default(self) -> str:
        return DEFAULT_LANGUAGE if DEFAULT_LANGUAGE in self else self.choices[0].alias


def local_languages() -> Languages:
    """The list from the Pygments installed here."""
    from snippet_service.highlighter import languages

    return Languages(languages())


async def fetch_languages(
    session: aiohttp.ClientSession, highlighter_url: str, wait: float = 10.0
) -> Languages:
    """Ask the highlighter (retrying for up to ``wait`` seconds while it starts)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            async with session.get(
                highlighter_url + "languages", timeout=aiohttp.ClientTimeout(total=3)
            ) as response:
                response.raise_for_status()
                items = await response.json()
            found = Languages(items)
            if found.choices:
                return found
            raise ValueError("empty language list")
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            if loop.time() >= deadline:
                logger.warning(
                    "highlighter languages unavailable (%r); using the local Pygments list", exc
                )
                return local_languages()
            await asyncio.sleep(0.2)
