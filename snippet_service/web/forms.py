"""Validation of a new snippet, shared by the HTML form and the JSON API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from snippet_service.web.languages import Languages


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
    """Check language and code; raise SnippetTooLarge for code over the size cap."""
    language = data.get("language")
    code = data.get(code_field)
    form = SnippetForm(
        language=language if isinstance(language, str) else "",
        plain_code=code if isinstance(code, str) else "",
    )
    if language is None or language == "":
        form.errors["language"] = "Choose a language."
    elif not isinstance(language, str) or language not in languages:
        form.errors["language"] = "This language is not supported."
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
