"""Scheduling options of a new snippet, in-process: the expiry choices and the deferred
highlight's delay, every accepted and refused value."""

from __future__ import annotations

import pytest

from snippet_service.web.options import (
    EXPIRY_CHOICES,
    MAX_HIGHLIGHT_DELAY,
    parse_expiry,
    parse_highlight_in,
)


@pytest.mark.parametrize(("data", "seconds"), [
    ({}, None), ({"expires_in": None}, None), ({"expires_in": ""}, None),
    ({"expires_in": "never"}, None), ({"expires_in": "10m"}, 600.0),
    ({"expires_in": "1h"}, 3600.0), ({"expires_in": "1d"}, 86400.0),
    ({"expires_in": "1w"}, 7 * 86400.0), ({"expires_in": "1mo"}, 30 * 86400.0),
    ({"expires_in": "1y"}, 365 * 86400.0),
])
def test_expiry_choices(data: dict[str, object], seconds: float | None) -> None:
    errors: dict[str, str] = {}
    assert parse_expiry(data, errors) == seconds
    assert errors == {}


@pytest.mark.parametrize("value", ["2y", "1M", "10M", " 1h", 600, ["1h"], True])
def test_unknown_expiry_is_an_error_naming_the_choices(value: object) -> None:
    errors: dict[str, str] = {}
    assert parse_expiry({"expires_in": value}, errors) is None
    assert errors == {"expires_in": "Expiry must be one of: never, 10m, 1h, 1d, 1w, 1mo, 1y."}
    assert list(EXPIRY_CHOICES) == ["never", "10m", "1h", "1d", "1w", "1mo", "1y"]


@pytest.mark.parametrize(("data", "seconds"), [
    ({}, 0.0), ({"highlight_in": None}, 0.0), ({"highlight_in": 0}, 0.0),
    ({"highlight_in": 2}, 2.0), ({"highlight_in": 0.5}, 0.5),
    ({"highlight_in": MAX_HIGHLIGHT_DELAY}, MAX_HIGHLIGHT_DELAY),
])
def test_highlight_in_accepts_seconds_up_to_a_week(data: dict[str, object],
                                                    seconds: float) -> None:
    errors: dict[str, str] = {}
    assert parse_highlight_in(data, errors) == seconds
    assert errors == {}


@pytest.mark.parametrize("value", [-1, -0.001, "soon", "2", MAX_HIGHLIGHT_DELAY + 1, 10**9,
                                   True, False, [1], float("nan"), float("inf")])
def test_bad_highlight_in_is_an_error(value: object) -> None:
    errors: dict[str, str] = {}
    assert parse_highlight_in({"highlight_in": value}, errors) == 0.0
    assert errors == {"highlight_in": "highlight_in must be a number of seconds from 0 to"
                                      f" {MAX_HIGHLIGHT_DELAY:.0f}."}
