"""The terminal colouring job: ask the highlighter for a snippet's code with 256-colour
escapes, keep it with the snippet's revision and wake the request waiting for it (see
:mod:`snippet_service.terminal`)."""

from __future__ import annotations

import re
from typing import Any

from snippet_service import db
from snippet_service.config import Config
from snippet_service.controls import CONTROL_PICTURES
from snippet_service.queue import publish_done
from tasks.client import (
    HighlighterRejected,
    HighlighterUnavailable,
    highlight_ansi,
    max_response_bytes,
)
from tasks.policy import FAILURE_DETAILS
from tasks.retry import RetryPolicy

# Asked for by a request that waits a few seconds: a few quick retries, then a later
# request asks again (once the dead job's kept result is gone).
ANSI_RETRIES = 2
# What of the highlighter's answer may reach a terminal: colours (SGR sequences), tabs and
# newlines. Every other control character (one starting a sequence that would set the
# window's title, move the cursor or clear the screen) is stored as a visible symbol.
COLOURS = re.compile(r"(\x1b\[[0-9;]{0,32}m)")


def clean_ansi(text: str) -> str:
    """The highlighter's answer with its colours kept and any other control character
    made visible (the highlighter makes none; a remote one is not trusted to)."""
    parts = COLOURS.split(text)  # colours at the odd indexes
    parts[::2] = [part.translate(CONTROL_PICTURES) for part in parts[::2]]
    return "".join(parts)


def ansi_policy(config: Config) -> RetryPolicy:
    """Retries while the highlighter is unavailable (connection errors, timeouts, 429/5xx)
    or the database busy, a few times only; a refusal is final at once."""
    return RetryPolicy(retry=ANSI_RETRIES, timeout=config.job_timeout,
                       retry_on=(HighlighterUnavailable, *db.transient_errors(config)),
                       fails_on=(HighlighterRejected,))


async def ansi_snippet(ctx: dict[str, Any], snippet_id: str, revision: int) -> str:
    """Colour one revision of a snippet for a terminal; safe to run twice (the text is
    kept only while that revision is the snippet's current one).

    Highlighter errors propagate: the retry policy decides whether to try again.
    """
    snippet_id = str(snippet_id)
    try:
        snippet = await db.get_snippet(ctx["db"], snippet_id)
    except db.SnippetNotFound:
        return "gone"
    if snippet.revision != revision:
        return f"superseded by revision {snippet.revision}"
    if snippet.ansi_revision == revision and snippet.ansi_code is not None:
        return "already done"
    ctx[FAILURE_DETAILS] = {"language": snippet.language}
    config = ctx["config"]
    text = await highlight_ansi(ctx["http"], config.highlighter_url, snippet.language,
                                snippet.plain_code, max_response_bytes(config.max_snippet_bytes))
    written = await db.store_ansi(ctx["db"], snippet_id, revision, clean_ansi(text))
    await publish_done(ctx["redis"], snippet_id)  # written or not, the waiting request looks
    return "stored" if written else "superseded"


async def ansi_failed(
    ctx: dict[str, Any], exc: Exception, message: str, snippet_id: str, revision: int
) -> None:
    """The job is dead (the highlighter refused the code, or stayed unavailable): the
    request waiting for the text wakes and answers without it."""
    await publish_done(ctx["redis"], snippet_id)
