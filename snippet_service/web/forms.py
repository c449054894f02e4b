"""Validation of a new snippet, shared by the HTML form and the JSON API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from snippet_service import owners
from snippet_service.db import ID_PATTERN, Draft
from snippet_service.web.detect import AUTO, detect
from snippet_service.web.languages import Languages

MAX_TITLE_CHARS = 200


class SnippetTooLarge(ValueError):
    """The code is over MAX_SNIPPET_BYTES."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the code is {size} bytes; the limit is {limit} bytes")
        self.size = size
        self.limit = limit


def max_body_bytes(max_snippet_bytes: int) -> int:
    """The request body limit (aiohttp's ``client_max_size``) that fits the largest code.

    A URL-encoded form spends up to 3 bytes (``%XX``) per byte of code, and JSON's
    ``\\uXXXX`` escapes up to 3 per byte of UTF-8 outside control characters; 64 KiB
    more covers the other fields, multipart boundaries and the CSRF token.
    """
    return 3 * max_snippet_bytes + 64 * 1024


@dataclass
class SnippetForm:
    """What was submitted, and what is wrong with it."""

    language: str = ""
    plain_code: str = ""
    title: str | None = None
    parent: str | None = None  # the snippet this one is forked (or edited) from
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors


def validate_snippet(
    data: Mapping[str, object],
    languages: Languages,
    max_bytes: int,
    code_field: str = "plain_code",
) -> SnippetForm:
    """Check language (``auto``: detect it), code, title and parent; raise SnippetTooLarge
    for code over the size cap."""
    language = data.get("language")
    code = data.get(code_field)
    form = SnippetForm(
        language=language if isinstance(language, str) else "",
        plain_code=code if isinstance(code, str) else "",
    )
    if language is None or language == "":
        form.errors["language"] = "Choose a language."
    elif not isinstance(language, str) or (language != AUTO and language not in languages):
        form.errors["language"] = "This language is not supported."
    _check_title(data.get("title"), form)
    parent = data.get("parent")
    if parent not in (None, ""):
        if isinstance(parent, str) and ID_PATTERN.fullmatch(parent):
            form.parent = parent
        else:
            form.errors["parent"] = "The snippet this one is forked from is not a snippet id."
    if code is None:
        form.errors[code_field] = "The code is missing."
    elif not isinstance(code, str):
        form.errors[code_field] = "The code must be text."
    elif not code.strip():
        form.errors[code_field] = "The code is empty."
    else:
        size = len(code.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise SnippetTooLarge(size, max_bytes)
        try:
            code.encode("utf-8")
        except UnicodeEncodeError:
            form.errors[code_field] = "The code is not valid UTF-8."
        if "\x00" in code:
            form.errors[code_field] = "The code contains a NUL character."
    return form


def _check_title(title: object, form: SnippetForm) -> None:
    """An optional title or file name: text of at most MAX_TITLE_CHARS characters, on one
    line (surrounding spaces dropped; empty means none)."""
    if title is None:
        return
    if not isinstance(title, str):
        form.errors["title"] = "The title must be text."
        return
    title = title.strip()
    if len(title) > MAX_TITLE_CHARS:
        form.errors["title"] = f"The title is over {MAX_TITLE_CHARS} characters."
    elif any(ord(char) < 32 or ord(char) == 127 for char in title):
        form.errors["title"] = "The title must be one line without control characters."
    elif title:
        try:
            title.encode("utf-8")
        except UnicodeEncodeError:
            form.errors["title"] = "The title is not valid UTF-8."
            return
        form.title = title


async def build_draft(form: SnippetForm, languages: Languages, *, highlight_in: float = 0.0,
                      expires_in: float | None = None, visibility: str = "unlisted",
                      burn: bool = False) -> tuple[Draft, str]:
    """The snippet a valid form creates (its language detected for ``auto``), and the
    owner token its creator gets (only the token's hash is stored)."""
    language, detected = form.language, form.language == AUTO
    if detected:
        language = await detect(form.title, form.plain_code, languages)
    token = owners.new_token()
    draft = Draft(language, form.plain_code, highlight_in, expires_in, form.title, visibility,
                  owners.token_hash(token), form.parent, burn, detected)
    return draft, token
