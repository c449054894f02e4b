"""Options of a new snippet: when it expires, how long highlighting waits, who may list
it and whether it burns after reading."""

from __future__ import annotations

from collections.abc import Mapping

EXPIRY_CHOICES: dict[str, tuple[str, float | None]] = {
    "never": ("Never", None),
    "10m": ("10 minutes", 600.0),
    "1h": ("1 hour", 3600.0),
    "1d": ("1 day", 86400.0),
    "1w": ("1 week", 7 * 86400.0),
    "1mo": ("1 month", 30 * 86400.0),
    "1y": ("1 year", 365 * 86400.0),
}
VISIBILITY_CHOICES: dict[str, str] = {
    "unlisted": "Unlisted: only people with the link",
    "public": "Public: listed on the front page",
}
TRUE_WORDS = frozenset({"1", "true", "on", "yes"})
FALSE_WORDS = frozenset({"", "0", "false", "off", "no"})
MAX_HIGHLIGHT_DELAY = 7 * 86400.0


def parse_expiry(data: Mapping[str, object], errors: dict[str, str]) -> float | None:
    """Seconds until the snippet expires (None: never); records an error for a bad choice."""
    choice = data.get("expires_in", "never")
    if choice in (None, ""):
        choice = "never"
    if not isinstance(choice, str) or choice not in EXPIRY_CHOICES:
        errors["expires_in"] = "Expiry must be one of: " + ", ".join(EXPIRY_CHOICES) + "."
        return None
    return EXPIRY_CHOICES[choice][1]


def parse_highlight_in(data: Mapping[str, object], errors: dict[str, str]) -> float:
    """Seconds to wait before highlighting (0 by default)."""
    value = data.get("highlight_in", 0)
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        0 <= value <= MAX_HIGHLIGHT_DELAY
    ):
        errors["highlight_in"] = (
            f"highlight_in must be a number of seconds from 0 to {MAX_HIGHLIGHT_DELAY:.0f}."
        )
        return 0.0
    return float(value)


def parse_visibility(data: Mapping[str, object], errors: dict[str, str]) -> str:
    """``unlisted`` (the default) or ``public``; records an error for anything else."""
    choice = data.get("visibility")
    if choice is None or choice == "":
        choice = "unlisted"
    if not isinstance(choice, str) or choice not in VISIBILITY_CHOICES:
        errors["visibility"] = "Visibility must be unlisted or public."
        return "unlisted"
    return choice


def parse_flag(data: Mapping[str, object], name: str, errors: dict[str, str]) -> bool:
    """A yes/no field: JSON true/false, or a form's or query's 1/0, on/off, true/false."""
    value = data.get(name, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in TRUE_WORDS | FALSE_WORDS:
        return value.lower() in TRUE_WORDS
    if value is None:
        return False
    errors[name] = f"{name} must be true or false."
    return False
