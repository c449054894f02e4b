"""What makes two failures "the same": the error class, the message with its variable parts
taken out, and the innermost frames of the traceback, hashed into a short fingerprint.

A thousand jobs that died of one outage differ only in snippet ids, ports, addresses and
times in their messages; their fingerprint is one, and the dashboard shows them as one
group.
"""

from __future__ import annotations

import hashlib
import re

PATTERN_CHARS = 200
TOP_FRAMES = 3

# Order matters: whole URLs and UUIDs before the numbers inside them.
_VARIABLE_PARTS: list[tuple[re.Pattern[str], str]] = [
    # a URL's host (and port and credentials); its path stays, with its numbers taken out
    (re.compile(r"\b([a-z][a-z0-9+.-]*://)(?:[^/\s@]+@)?(?:\[[0-9a-f:.]+\]|[^/\s:?#'\"]+)"
                r"(?::\d+)?", re.IGNORECASE), r"\1<host>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
                re.IGNORECASE), "<uuid>"),
    (re.compile(r"'[^'\n]*'|\"[^\"\n]*\""), "<str>"),
    (re.compile(r"\[[0-9a-f]*:[0-9a-f:.]+\](?::\d+)?", re.IGNORECASE), "<address>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<address>"),
    (re.compile(r"(?<![\w:])(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})(?:[0-9a-f]{0,4}:){2,7}"
                r"[0-9a-f]{0,4}(?![\w:])", re.IGNORECASE), "<address>"),
    (re.compile(r"\b0x[0-9a-f]+\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b", re.IGNORECASE), "<hex>"),
    (re.compile(r"\d+(?:\.\d+)?"), "<n>"),
    (re.compile(r"\s+"), " "),
]
_FRAME = re.compile(r'^\s*File "([^"\n]+)", line \d+, in (\S+)', re.MULTILINE)
_CHAINED = re.compile(r"\n(?:The above exception was the direct cause of the following "
                      r"exception|During handling of the above exception, another exception "
                      r"occurred):\n")


def message_pattern(message: str) -> str:
    """The message with numbers, ids, hex, UUIDs, addresses and ports, URLs' hosts and
    quoted strings replaced by placeholders (``<n>``, ``<uuid>``, ``<host>``…)."""
    text = message
    for pattern, placeholder in _VARIABLE_PARTS:
        text = pattern.sub(placeholder, text)
    text = text.strip()
    return text if len(text) <= PATTERN_CHARS else text[:PATTERN_CHARS - 1] + "…"


def top_frames(traceback: str, count: int = TOP_FRAMES) -> list[str]:
    """``file:function`` of the innermost frames of the exception itself (not those of the
    exceptions it was raised from), innermost last; a file is named by its last two path
    parts, so the same code installed in two places gives the same frames."""
    blocks = _CHAINED.split(traceback)
    frames = _FRAME.findall(blocks[-1]) if blocks else []
    return [f"{_short_path(path)}:{function}" for path, function in frames[-count:]]


def _short_path(path: str) -> str:
    parts = [part for part in re.split(r"[\\/]", path) if part]
    return "/".join(parts[-2:]) if parts else path


def fingerprint_of(function: str, error_class: str, message: str, traceback: str) -> str:
    """A short, stable hash of the job function, the error class, the message pattern and
    the top frames."""
    key = "\n".join([function, error_class, message_pattern(message),
                     *top_frames(traceback)])
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]
