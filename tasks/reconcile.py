"""The database is the source of truth: re-enqueue pending snippets whose job was lost
(an enqueue that failed, Redis flushed or restarted empty), and purge expired snippets."""

from __future__ import annotations

import logging
import os

from arq.connections import ArqRedis

from snippet_service import db, jobops, snippets
from snippet_service.config import Config

logger = logging.getLogger("tasks.reconcile")

LOCK_KEY = "snippets:reconcile:lock"


async def reconcile(database: db.Database, redis: ArqRedis, config: Config) -> int:
    """One pass (one worker at a time); returns how many snippets were re-enqueued."""
    lock_ms = max(100, int(config.reconcile_interval * 900))
    if not await redis.set(LOCK_KEY, os.getpid(), nx=True, px=lock_ms):
        return 0
    await snippets.expire_overdue(database)
    requeued = await snippets.requeue_lost(database, redis, config.reconcile_after)
    await jobops.forget_lost_retries(redis)
    return requeued
