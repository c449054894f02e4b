"""A snippet coloured for a terminal (``GET /snippets/{id}?format=ansi``), made on demand.

The worker's ``ansi_snippet`` job asks the highlighter for the code with 256-colour
escapes and keeps the text with the snippet, for the revision it was made from
(``Snippet.ansi_code``, ``Snippet.ansi_revision``); it then announces the snippet on the
done channel, as a finished highlight is, so a request waiting for the text wakes.

Each revision has one job id, so asking again while the job waits or runs does nothing;
after it ends, its result is kept for a few minutes (arq's ``keep_result``) and asking
again does nothing either, so a snippet the highlighter refuses (or renders too slowly)
costs one render per few minutes however often it is asked for.
"""

from __future__ import annotations

from datetime import timedelta

from arq.connections import ArqRedis

from snippet_service.queue import NewJob, enqueue_many, job_is_live

ANSI_JOB = "ansi_snippet"
# Nobody waits that long for the text: past this, a job still queued is dropped unrun.
ANSI_JOB_EXPIRES = timedelta(hours=1)


def ansi_job_id(snippet_id: str, revision: int) -> str:
    """The job id of the terminal colouring of one revision of a snippet."""
    return f"ansi:{snippet_id}:{revision}"


async def request_ansi(redis: ArqRedis, snippet_id: str, revision: int,
                       queue_name: str) -> None:
    """Enqueue the job colouring this revision for a terminal (nothing happens while one
    for it waits, runs, or ended a few minutes ago)."""
    job = NewJob(ANSI_JOB, (snippet_id, revision), ansi_job_id(snippet_id, revision),
                 expires=ANSI_JOB_EXPIRES)
    await enqueue_many(redis, [job], queue_name)


async def ansi_pending(redis: ArqRedis, snippet_id: str, revision: int) -> bool:
    """Whether the job for this revision is still queued, waiting for a retry or running
    (a request waiting for its text may stop waiting once it is not)."""
    return await job_is_live(redis, ansi_job_id(snippet_id, revision))
