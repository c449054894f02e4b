"""Validation of a new snippet (shared by the form and the API), in-process: every rule's
message, and the size cap counted in UTF-8 bytes. test_validation.py checks the same
answers end to end, once each way in."""

from __future__ import annotations

import pytest

from snippet_service.web.forms import SnippetTooLarge, max_body_bytes, validate_snippet
from snippet_service.web.languages import Languages

LANGUAGES = Languages([{"name": "Python", "aliases": ["python", "py"]},
                       {"name": "Text only", "aliases": ["text"]}])
LIMIT = 64


@pytest.mark.parametrize(("data", "errors"), [
    ({"language": "python", "plain_code": "x = 1"}, {}),
    ({"language": "py", "plain_code": "x = 1"}, {}),
    ({"language": "python", "plain_code": ""}, {"plain_code": "The code is empty."}),
    ({"language": "python", "plain_code": "  \n\t  "}, {"plain_code": "The code is empty."}),
    ({"language": "no-such-language", "plain_code": "x = 1"},
     {"language": "This language is not supported."}),
    ({"language": ["python"], "plain_code": "x = 1"},
     {"language": "This language is not supported."}),
    ({"plain_code": "x = 1"}, {"language": "Choose a language."}),
    ({"language": "", "plain_code": "x = 1"}, {"language": "Choose a language."}),
    ({"language": "python"}, {"plain_code": "The code is missing."}),
    ({"language": "python", "plain_code": 42}, {"plain_code": "The code must be text."}),
    ({"language": "python", "plain_code": "\ud800"},
     {"plain_code": "The code is not valid UTF-8."}),
    ({"language": "python", "plain_code": "a\x00b"},
     {"plain_code": "The code contains a NUL character."}),
    ({}, {"language": "Choose a language.", "plain_code": "The code is missing."}),
])
def test_each_rule_has_its_message(data: dict[str, object], errors: dict[str, str]) -> None:
    form = validate_snippet(data, LANGUAGES, LIMIT)
    assert form.errors == errors
    assert form.valid is (not errors)


def test_what_was_typed_is_kept_for_the_form_to_show_again() -> None:
    form = validate_snippet({"language": "nope", "plain_code": "print(1)"}, LANGUAGES, LIMIT)
    assert (form.language, form.plain_code) == ("nope", "print(1)")
    form = validate_snippet({"language": 7, "plain_code": 8}, LANGUAGES, LIMIT)
    assert (form.language, form.plain_code) == ("", "")


def test_the_api_names_its_own_code_field() -> None:
    form = validate_snippet({"language": "python"}, LANGUAGES, LIMIT, code_field="code")
    assert form.errors == {"code": "The code is missing."}


@pytest.mark.parametrize(("code", "too_large"), [
    ("x" * LIMIT, False),
    ("x" * (LIMIT + 1), True),
    ("é" * (LIMIT // 2), False),       # bytes are counted, not characters
    ("é" * (LIMIT // 2 + 1), True),
])
def test_the_size_cap_counts_utf8_bytes(code: str, too_large: bool) -> None:
    data = {"language": "python", "plain_code": code}
    if not too_large:
        assert validate_snippet(data, LANGUAGES, LIMIT).valid
        return
    with pytest.raises(SnippetTooLarge) as raised:
        validate_snippet(data, LANGUAGES, LIMIT)
    size = len(code.encode())
    assert (raised.value.size, raised.value.limit) == (size, LIMIT)
    assert str(raised.value) == f"the code is {size} bytes; the limit is {LIMIT} bytes"


def test_the_body_limit_fits_the_largest_encoded_form() -> None:
    assert max_body_bytes(LIMIT) >= 3 * LIMIT  # every byte of code as %XX
    assert max_body_bytes(512 * 1024) == 3 * 512 * 1024 + 64 * 1024
