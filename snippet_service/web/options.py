"""Scheduling options of a new snippet: when it expires and how long highlighting waits."""

from __future__ import annotations

from collections.abc import Mapping

EXPIRY_CHOICES: dict[str, tuple[str, float | None]] = {
    "never": ("Never", None),
    "10m": ("10 minutes", 600.0),
    "1h": ("1 hour", 3600.0),
    "1d": ("1 day", 86400.0),
    "1w": ("1 week", 7 * 86400.0),
}
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
