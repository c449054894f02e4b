"""New snippets in groups: the snippets posted within one tick are inserted by one
statement and their jobs enqueued by one Redis round trip (group commit). Each request is
answered once its row is committed and its jobs are in Redis.

With Redis unreachable the snippets stay pending in SQLite and the worker's reconciler
enqueues them later, as for a single snippet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from snippet_service import bulk, db
from snippet_service.batching import Batcher
from snippet_service.queue import NewJob, enqueue_many, snippet_jobs

logger = logging.getLogger("snippet_service.web.intake")


class Intake:
    """Creates snippets and enqueues their jobs, many at a time."""

    def __init__(self, database: db.Database, redis: ArqRedis, queue_name: str) -> None:
        self._database = database
        self._redis = redis
        self._queue_name = queue_name
        self._batcher: Batcher[bulk.Draft, db.Snippet] = Batcher(
            self._flush, max_size=bulk.MAX_BATCH_ROWS, concurrency=2, name="intake"
        )  # one batch is enqueued in Redis while the next is inserted

    async def create(self, draft: bulk.Draft) -> db.Snippet:
        """Store one pending snippet and enqueue its jobs, with whatever else is waiting."""
        return await self._batcher.submit(draft)

    async def close(self) -> None:
        await self._batcher.close()

    async def _flush(self, drafts: Sequence[bulk.Draft]) -> list[db.Snippet]:
        snippets = await bulk.create_snippets(self._database, drafts)
        jobs: list[NewJob] = []
        for snippet in snippets:
            jobs += snippet_jobs(
                snippet.id, snippet.revision,
                db.parse_timestamp(snippet.highlight_at) if snippet.highlight_at else None,
                db.parse_timestamp(snippet.expires_at) if snippet.expires_at else None,
            )
        try:
            await enqueue_many(self._redis, jobs, self._queue_name)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("snippets %d-%d stored but not enqueued: %r",
                           snippets[0].id, snippets[-1].id, exc)
        return snippets
