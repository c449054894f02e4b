"""The highlight job: fetch HTML for a snippet from the highlighter and store it."""

from __future__ import annotations

import logging
from typing import Any

from arq import Retry

from snippet_service import db
from snippet_service.client import HighlighterError, highlight
from snippet_service.queue import publish_done
from snippet_service.sanitize import clean_html

logger = logging.getLogger("tasks.highlight")

MAX_TRIES = 5


def retry_delay(job_try: int, retry_after: float | None) -> float:
    """Seconds to wait before the next try: the server's Retry-After, else a growing delay."""
    if retry_after is not None:
        return min(retry_after, 300.0)
    return float(min(job_try**2, 60))


async def highlight_snippet(ctx: dict[str, Any], snippet_id: int) -> str:
    """Highlight one snippet by id; safe to run twice (only a pending revision is written)."""
    database: db.Database = ctx["db"]
    try:
        snippet = await db.get_snippet(database, snippet_id)
    except db.SnippetNotFound:
        return "missing"
    if snippet.status != db.PENDING:
        return f"already {snippet.status}"
    try:
        html = await highlight(
            ctx["http"], ctx["config"].highlighter_url, snippet.language, snippet.plain_code
        )
    except HighlighterError as exc:
        job_try = int(ctx.get("job_try", 1))
        if exc.transient and job_try < MAX_TRIES:
            delay = retry_delay(job_try, exc.retry_after)
            logger.info("snippet %d: %s; try %d again in %.0fs", snippet_id, exc, job_try, delay)
            raise Retry(defer=delay) from exc
        await db.mark_failed(database, snippet_id, snippet.revision, str(exc))
        await publish_done(ctx["redis"], snippet_id)
        return "failed"
    written = await db.mark_highlighted(database, snippet_id, snippet.revision, clean_html(html))
    await publish_done(ctx["redis"], snippet_id)
    return "highlighted" if written else "already done"
