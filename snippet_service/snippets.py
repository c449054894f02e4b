"""A snippet's life: created and enqueued, highlighted again, failed, expired or deleted.

The web app's views, its API and the dashboard's actions, and the worker's jobs and
reconciler, all change snippets through these functions, so that every change reaches the
database, the queue and the snippet-done channel in the same way.

The database (SQLite or PostgreSQL) is the source of truth. When Redis cannot be reached, a
snippet that should have a job stays pending in the database and :func:`requeue_lost` (run
by the worker's reconciler) enqueues it once Redis is back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from snippet_service import bulk, db
from snippet_service.batching import Batcher
from snippet_service.queue import (
    NewJob,
    clear_result,
    enqueue_highlight,
    enqueue_many,
    highlight_job_id,
    job_is_live,
    publish_done,
    snippet_jobs,
)

logger = logging.getLogger("snippet_service.snippets")

REDIS_ERRORS = (TimeoutError, RedisError, OSError)
# Jobs an operator stopped (job id -> when): their snippets stay pending, and the reconciler
# leaves them alone until the job is re-queued (see jobops.stop_job).
STOPPED_JOBS = "snippets:stopped"


class Intake:
    """Creates snippets and enqueues their jobs, many at a time: the snippets submitted
    within one tick are inserted by one statement and their jobs enqueued by one Redis round
    trip (group commit). Each caller gets its snippet once its row is committed and its jobs
    are in Redis (or Redis has failed: the snippet then waits for the reconciler)."""

    def __init__(self, database: db.Database, redis: ArqRedis, queue_name: str) -> None:
        self._database = database
        self._redis = redis
        self._queue_name = queue_name
        self._batcher: Batcher[bulk.Draft, db.Snippet] = Batcher(
            self._flush, max_size=bulk.MAX_BATCH_ROWS, concurrency=2, name="intake"
        )  # one batch is enqueued in Redis while the next is inserted

    async def create(self, draft: bulk.Draft) -> db.Snippet:
        """Store one pending snippet and enqueue its highlight job (deferred to its
        ``highlight_at``) and, for an expiring snippet, its deferred delete; with whatever
        else is waiting."""
        return await self._batcher.submit(draft)

    async def close(self) -> None:
        """Finish what is waiting."""
        await self._batcher.close()

    async def _flush(self, drafts: Sequence[bulk.Draft]) -> list[db.Snippet]:
        snippets = await bulk.create_snippets(self._database, drafts)
        jobs: list[NewJob] = []
        for snippet in snippets:
            jobs += snippet_jobs(snippet.id, snippet.revision, snippet.highlight_at,
                                 snippet.expires_at)
        try:
            await enqueue_many(self._redis, jobs, self._queue_name)
        except REDIS_ERRORS as exc:
            logger.warning("snippets %s-%s stored but not enqueued: %r",
                           snippets[0].id, snippets[-1].id, exc)
        return snippets


async def rehighlight(database: db.Database, redis: ArqRedis, snippet_id: str,
                      language: str | None = None) -> db.Snippet:
    """Highlight a snippet again (optionally in another language) as a new revision, with
    a new job id (never blocked by the old job's kept result); pages showing it update.
    Raises :class:`db.SnippetNotFound`."""
    snippet = await db.rehighlight(database, snippet_id, language)
    try:
        await publish_done(redis, snippet_id)  # every web process drops its cached copy
        await enqueue_highlight(redis, snippet_id, snippet.revision)
    except REDIS_ERRORS as exc:
        logger.warning("snippet %s revision %d not enqueued: %r", snippet_id,
                       snippet.revision, exc)
    return snippet


async def fail(database: db.Database, redis: ArqRedis, snippet_id: str,
               revision: int | None, reason: str) -> bool:
    """Mark one revision (None: the current one) of a pending snippet failed with the
    reason, and announce it; False if that revision was not pending (or the snippet is
    gone)."""
    if revision is None:
        try:
            revision = (await db.get_snippet(database, snippet_id)).revision
        except db.SnippetNotFound:
            return False
    failed = await db.mark_failed(database, snippet_id, revision, reason)
    if failed:
        await publish_done(redis, snippet_id)
    return failed


async def delete(database: db.Database, redis: ArqRedis, snippet_id: str) -> bool:
    """Delete a snippet (an expiring one's deferred delete job does this at its expiry)
    and announce it, so web processes drop their cached copies; False if already gone."""
    deleted = await db.delete_snippet(database, snippet_id)
    await publish_done(redis, snippet_id)
    return deleted


async def burn(database: db.Database, redis: ArqRedis, snippet_id: str) -> db.Snippet:
    """Read a burn-after-reading snippet for the one reader it has: deleted as it is read
    (of two readers at once only one gets it) and announced. Raises SnippetNotFound."""
    snippet = await db.take_snippet(database, snippet_id)
    logger.info("snippet %s read once and deleted (burn after reading)", snippet_id)
    await publish_done(redis, snippet_id)
    return snippet


async def expire_overdue(database: db.Database) -> int:
    """Delete every snippet past its expiry (reads hide them already, so nothing cached
    shows them); returns how many."""
    purged = await db.purge_expired(database)
    if purged:
        logger.info("purged %d expired snippets", purged)
    return purged


async def requeue_lost(database: db.Database, redis: ArqRedis, older_than: float) -> int:
    """Enqueue again the highlight job of each snippet pending for ``older_than`` seconds
    whose job is not in Redis (an enqueue that failed, Redis flushed or restarted empty),
    deferred ones still no earlier than asked; returns how many. A job an operator stopped
    (:data:`STOPPED_JOBS`) is left alone."""
    now = db.utcnow()
    checked: list[str] = []
    requeued = 0
    for snippet in await db.stale_pending(database, older_than):
        checked.append(snippet.id)
        job_id = highlight_job_id(snippet.id, snippet.revision)
        if (await job_is_live(redis, job_id)
                or await redis.zscore(STOPPED_JOBS, job_id) is not None):
            continue
        run_at = snippet.highlight_at
        await clear_result(redis, job_id)
        await enqueue_highlight(redis, snippet.id, snippet.revision,
                                run_at if run_at and run_at > now else None)
        requeued += 1
    await db.mark_queued(database, checked)
    if requeued:
        logger.warning("re-enqueued %d pending snippets that had no job", requeued)
    return requeued
