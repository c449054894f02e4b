"""What a visitor is told about a failed highlight.

The stored error (``snippets.error``) is written by the worker for the dashboard and the
logs: it may name hosts, ports and exception classes. Pages show a plain reason made from
it instead, keeping the highlighter's own short reason for refusing an input; the API shows
the stored text unless it carries such detail, and then the plain reason.
"""

from __future__ import annotations

import re

UNREACHABLE = "the highlighter could not be reached"
TOO_SLOW = "too slow to highlight"
UNAVAILABLE = "the highlighter kept failing"
BAD_ANSWER = "the highlighter's answer could not be used"
REFUSED = "the highlighter refused this input"
CANCELLED = "the highlight was cancelled"
UNKNOWN = "highlighting failed"
MAX_SHOWN_CHARS = 200

_ANSWERED = re.compile(r"highlighter answered (\d{3})\b")
# The highlighter's answer was unusable: too large, not HTML, not UTF-8, not HTTP.
_BAD_ANSWER = re.compile(r"^highlighter (response is|answered \S+, not|sent a malformed)")
# What an exception's repr or a timeout looks like: internal detail, never shown.
_INTERNAL = re.compile(r"\w+(Error|Exception|Timeout)\b|Traceback|\w+\(.*\)|https?://|"
                       r"\b\d{1,3}(\.\d{1,3}){3}\b|\bport\b", re.IGNORECASE)
_TIMEOUT = re.compile(r"time(d)? ?out|took longer than|too slow", re.IGNORECASE)


def visitor_reason(error: str | None) -> str | None:
    """The reason a visitor sees for a stored error (None for no error)."""
    if error is None:
        return None
    text = " ".join(error.split())
    if not text:
        return UNKNOWN
    if text.startswith("highlighter unreachable"):
        return TOO_SLOW if _TIMEOUT.search(text) else UNREACHABLE
    if "deleted from the dashboard" in text:
        return CANCELLED
    answered = _ANSWERED.search(text)
    if answered and (answered.group(1) == "429" or answered.group(1) >= "500"):
        return f"{UNAVAILABLE} (it answered {answered.group(1)})"
    if _BAD_ANSWER.search(text):
        return BAD_ANSWER
    if _TIMEOUT.search(text):
        return TOO_SLOW
    if answered or _INTERNAL.search(text):
        return UNKNOWN
    # Anything else is the highlighter's own short reason for refusing this input (its 4xx
    # answer's body, already one line); the stored text is at most 500 characters.
    shown = text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS - 1] + "…"
    return f"{REFUSED}: {shown}"


def api_error(error: str | None) -> str | None:
    """The error the API shows: the stored text, or the plain reason where the stored text
    names internals (hosts, ports, exceptions) or a timeout."""
    if error is None:
        return None
    text = " ".join(error.split())
    if text.startswith("highlighter unreachable") or _INTERNAL.search(text) or (
            _TIMEOUT.search(text)):
        return visitor_reason(error)
    return text
