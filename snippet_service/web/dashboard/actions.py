"""The dashboard's actions on the queue: retry or delete dead jobs; run, delete or kill
queued ones. What they do to a highlight job's snippet goes through :mod:`snippets`."""

from __future__ import annotations

import secrets
import time

from arq.connections import ArqRedis
from arq.constants import job_key_prefix

from snippet_service import db, deadset, snippets
from snippet_service.queue import HIGHLIGHT_JOB, highlight_target, revision_of


async def retry_dead(redis: ArqRedis, database: db.Database, job_id: str) -> bool:
    """Run a dead job again (a highlight starts a new revision of its snippet); False if
    there is no such dead job."""
    job = await deadset.get_dead(redis, job_id)
    if job is None:
        return False
    if job.function == HIGHLIGHT_JOB:
        try:
            await snippets.rehighlight(database, redis, int(job.args[0]))
        except db.SnippetNotFound:
            pass  # nothing to highlight: the dead job just goes
    else:
        new_id = f"{job_id}:retry:{secrets.token_hex(4)}"
        await redis.enqueue_job(job.function, *job.args, _job_id=new_id)
    return await deadset.remove_dead(redis, job_id)


async def delete_dead(redis: ArqRedis, job_id: str) -> bool:
    """Forget one dead job."""
    return await deadset.remove_dead(redis, job_id)


async def retry_all_dead(redis: ArqRedis, database: db.Database) -> int:
    """Retry every job dead now (not those that die again meanwhile); return how many."""
    job_ids = await redis.zrangebyscore(deadset.DEAD_SET, "-inf", time.time())
    count = 0
    for job_id in job_ids:
        count += await retry_dead(redis, database, job_id.decode())
    return count


async def delete_all_dead(redis: ArqRedis) -> int:
    """Empty the dead set; return how many went."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zcard(deadset.DEAD_SET)
        pipe.delete(deadset.DEAD_SET, deadset.DEAD_DATA)
        count, _ = await pipe.execute()
    return int(count)


async def run_now(redis: ArqRedis, queue: str, job_id: str) -> bool:
    """Move a scheduled or retrying job to the front of the queue; False if not queued."""
    changed = await redis.zadd(queue, {job_id: int(time.time() * 1000)}, xx=True, ch=True)
    return bool(changed)


async def delete_job(redis: ArqRedis, database: db.Database, queue: str, job_id: str) -> bool:
    """Take a scheduled or retrying job out of the queue for good (a highlight's snippet
    becomes failed, so the reconciler does not bring the job back)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(queue, job_id)
        pipe.delete(job_key_prefix + job_id)
        removed, _ = await pipe.execute()
    await deadset.forget_job(redis, job_id)
    target = highlight_target(job_id)
    if removed and target is not None:
        await snippets.fail(database, redis, *target,
                            "the highlight job was deleted from the dashboard")
    return bool(removed)


async def kill_retrying(
    redis: ArqRedis, database: db.Database, queue: str, job_id: str
) -> bool:
    """Stop retrying a job: move it to the dead set (a highlight's snippet becomes failed)."""
    record = await deadset.get_retrying(redis, job_id)
    if record is None:
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(queue, job_id)
        pipe.delete(job_key_prefix + job_id)
        await pipe.execute()
    record.failed_at, record.next_at = time.time(), None
    await deadset.record_dead(redis, record)
    if record.function == HIGHLIGHT_JOB and record.args:
        await snippets.fail(database, redis, int(record.args[0]), revision_of(job_id),
                            record.error)
    return True
