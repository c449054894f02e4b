"""The highlight job: fetch HTML for a snippet from the highlighter and store it."""

from __future__ import annotations

import logging
from typing import Any

from snippet_service import db, snippets
from snippet_service.queue import DONE_CHANNEL, revision_of
from tasks.client import highlight, max_response_bytes
from tasks.finish import announce
from tasks.policy import FAILURE_DETAILS
from tasks.sanitize import clean_html
from tasks.store import SnippetStore

logger = logging.getLogger("tasks.highlight")


async def highlight_snippet(ctx: dict[str, Any], snippet_id: str) -> str:
    """Highlight one snippet by id; safe to run twice (only a pending revision is written).

    Highlighter errors propagate: the retry policy decides whether to try again.
    """
    snippet_id = str(snippet_id)  # a job enqueued before ids were strings carries a number
    store: SnippetStore = ctx["snippets"]
    snippet = await store.get(snippet_id)  # one query for the jobs started with this one
    if snippet is None:
        return "missing"
    ctx[FAILURE_DETAILS] = {"language": snippet.language}
    wanted = revision_of(ctx.get("job_id", ""))
    if wanted is not None and wanted != snippet.revision:
        return f"superseded by revision {snippet.revision}"
    if snippet.status != db.PENDING:
        return f"already {snippet.status}"
    config = ctx["config"]
    html = await highlight(ctx["http"], config.highlighter_url, snippet.language,
                           snippet.plain_code, max_response_bytes(config.max_snippet_bytes))
    # Committed with the other results waiting (group commit) before the job finishes in
    # Redis: a crash in between runs the job again, and the revision check makes that safe.
    written = await store.store_highlight(snippet_id, snippet.revision, clean_html(html))
    if written:  # the web processes learn of it with the batch that finishes this job
        await announce(ctx, DONE_CHANNEL, str(snippet_id))
    return "highlighted" if written else "already done"


async def highlight_failed(
    ctx: dict[str, Any], exc: Exception, message: str, snippet_id: str
) -> None:
    """The job is dead: the snippet shows `failed` with the reason (the revision its job id
    names; the current one for a job enqueued under another id)."""
    snippet_id = str(snippet_id)
    revision = revision_of(ctx.get("job_id", ""))
    await snippets.fail(ctx["db"], ctx["redis"], snippet_id, revision, message)


async def expire_snippet(ctx: dict[str, Any], snippet_id: str) -> str:
    """The deferred delete of an expiring snippet (reads hide it once expired anyway)."""
    snippet_id = str(snippet_id)
    deleted = await snippets.delete(ctx["db"], ctx["redis"], snippet_id)
    return "deleted" if deleted else "already gone"
