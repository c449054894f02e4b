"""Language detection for ``language: "auto"``, language names, and the file name a
download gets.

A title that is a file name with a known extension decides; otherwise Pygments guesses
from the code (in a thread: the first guess loads every lexer, and a guess reads at most
GUESS_CHARS characters). A guess the highlighter cannot highlight becomes plain text.
"""

from __future__ import annotations

import asyncio
import json
import re
from functools import lru_cache

from pygments.lexers import find_lexer_class_by_name, find_lexer_class_for_filename, guess_lexer
from pygments.util import ClassNotFound

from snippet_service.web.languages import Languages

AUTO = "auto"
PLAIN = "text"
GUESS_CHARS = 20_000
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"[A-Za-z0-9_+-]{1,16}")
MAX_FILENAME = 100


def by_filename(title: str | None, code: str, languages: Languages) -> str | None:
    """The language a file name's extension names, if the highlighter knows it."""
    if not title or "." not in title.strip(". "):
        return None
    try:
        lexer = find_lexer_class_for_filename(title.strip(), code[:GUESS_CHARS])
    except ClassNotFound:
        return None
    if lexer is None:
        return None
    return next((alias for alias in lexer.aliases if alias in languages), None)


def _guess(code: str) -> list[str]:
    sample = code[:GUESS_CHARS]
    if sample.lstrip()[:1] in ("{", "["):
        try:
            json.loads(sample)  # Pygments takes JSON for plain text
        except (ValueError, RecursionError):  # not JSON (or nested past Python's limit)
            pass
        else:
            return ["json"]
    try:
        return list(guess_lexer(sample).aliases)
    except ClassNotFound:
        return []


async def detect(title: str | None, code: str, languages: Languages) -> str:
    """The language of a snippet submitted with ``language: "auto"``."""
    found = by_filename(title, code, languages)
    if found is not None:
        return found
    aliases = await asyncio.to_thread(_guess, code)
    return next((alias for alias in aliases if alias in languages), PLAIN)


@lru_cache(maxsize=512)
def _lexer_info(alias: str) -> tuple[str, str]:
    try:
        lexer = find_lexer_class_by_name(alias)
    except ClassNotFound:
        return alias, "txt"
    extension = "txt"
    for pattern in lexer.filenames:
        match = re.fullmatch(r"\*\.([A-Za-z0-9_+-]+)", pattern)
        if match:
            extension = match.group(1)
            break
    return lexer.name, extension


def language_name(alias: str) -> str:
    """A language's name, as people know it ("Python" for ``python``)."""
    return _lexer_info(alias)[0]


def download_name(title: str | None, snippet_id: str, language: str) -> str:
    """A safe file name for a download: the title's, reduced to letters, digits, dots,
    dashes and underscores (never hidden, never a path; ``unicode_name`` keeps the rest),
    else ``snippet-{id}`` with the title's or the language's usual extension."""
    usual = "." + _lexer_info(language)[1]
    if not title:
        return f"snippet-{snippet_id}{usual}"
    stem, dot, given = title.strip().rpartition(".")
    extension = "." + given if dot and _EXTENSION.fullmatch(given) else ""
    if not extension:
        stem = title.strip()
    stem = _UNSAFE_NAME.sub("_", stem).strip("._")[:MAX_FILENAME]
    return (stem + extension) if stem else f"snippet-{snippet_id}{extension or usual}"


def unicode_name(title: str | None) -> str | None:
    """The title as a UTF-8 file name (``filename*``) when it is not plain ASCII: its last
    path part, without control characters; None otherwise."""
    if not title or title.isascii():
        return None
    name = title.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    name = "".join(char for char in name if char.isprintable())[:MAX_FILENAME]
    return name or None
