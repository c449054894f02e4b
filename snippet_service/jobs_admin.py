"""Actions on dead jobs, for the dashboard: retry or delete one or all."""

from __future__ import annotations

import secrets

from arq.connections import ArqRedis

from snippet_service import db, deadset
from snippet_service.queue import HIGHLIGHT_JOB, enqueue_highlight


async def retry_dead(redis: ArqRedis, database: db.Database, job_id: str) -> bool:
    """Run a dead job again (a highlight starts a new revision of its snippet); False if
    there is no such dead job."""
    job = await deadset.get_dead(redis, job_id)
    if job is None:
        return False
    if job.function == HIGHLIGHT_JOB:
        try:
            snippet = await db.rehighlight(database, int(job.args[0]))
        except db.SnippetNotFound:
            return await deadset.remove_dead(redis, job_id)
        await enqueue_highlight(redis, snippet.id, snippet.revision)
    else:
        new_id = f"{job_id}:retry:{secrets.token_hex(4)}"
        await redis.enqueue_job(job.function, *job.args, _job_id=new_id)
    return await deadset.remove_dead(redis, job_id)


async def delete_dead(redis: ArqRedis, job_id: str) -> bool:
    """Forget one dead job."""
    return await deadset.remove_dead(redis, job_id)


async def retry_all_dead(redis: ArqRedis, database: db.Database, batch: int = 500) -> int:
    """Retry every dead job, a batch at a time; return how many."""
    count = 0
    while jobs := await deadset.dead_jobs(redis, 0, batch):
        for job in jobs:
            count += await retry_dead(redis, database, job.job_id)
    return count


async def delete_all_dead(redis: ArqRedis) -> int:
    """Empty the dead set; return how many went."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zcard(deadset.DEAD_SET)
        pipe.delete(deadset.DEAD_SET, deadset.DEAD_DATA)
        count, _ = await pipe.execute()
    return int(count)
