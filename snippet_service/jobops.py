"""Operations on the queue that the dashboard's buttons and the admin command line share:
retry or delete dead jobs; run, delete or kill queued ones; stop a job and re-queue it;
purge old dead jobs. What they do to a highlight job's snippet goes through
:mod:`snippets`."""

from __future__ import annotations

import json
import secrets
import time
from typing import Literal

from arq.connections import ArqRedis
from arq.constants import abort_jobs_ss, job_key_prefix, result_key_prefix
from arq.jobs import Job

from snippet_service import control, db, deadset, snippets
from snippet_service.queue import (
    HIGHLIGHT_JOB,
    JOB_EXPIRES,
    deserialize,
    enqueue_highlight,
    highlight_target,
    job_is_live,
    revision_of,
)

StopOutcome = Literal["aborted", "requested", "finished", "not running"]
STOP_WAIT_SECONDS = 3.0  # how long a stop waits for the worker to confirm the abort
STOPPED_MAX_ENTRIES = 10_000


async def retry_dead(redis: ArqRedis, database: db.Database, job_id: str) -> bool:
    """Run a dead job again (a highlight starts a new revision of its snippet); False if
    there is no such dead job."""
    job = await deadset.get_dead(redis, job_id)
    if job is None:
        return False
    if job.function == HIGHLIGHT_JOB:
        snippet_id = str(job.args[0])
        state = await db.snippet_status(database, snippet_id)
        died = revision_of(job_id)
        # Only the revision that died is highlighted again: once the snippet has moved on
        # (highlighted again since, or deleted), the dead job just goes.
        if state is not None and (died is None or died == state[1]):
            try:
                await snippets.rehighlight(database, redis, snippet_id)
            except db.SnippetNotFound:
                pass
    else:
        new_id = f"{job_id}:retry:{secrets.token_hex(4)}"
        await redis.enqueue_job(job.function, *job.args, _job_id=new_id)
    return await deadset.remove_dead(redis, job_id)


async def requeue_outage_deaths(redis: ArqRedis, database: db.Database, opened_at: float,
                                lookback: float) -> int:
    """The highlighter's breaker closed: retry, once, the highlight jobs that went dead with
    a transient failure while it was open or up to ``lookback`` seconds before it opened;
    return how many."""
    job_ids = await control.take_outage_deaths(redis, opened_at - lookback, time.time())
    count = 0
    for job_id in job_ids:
        count += await retry_dead(redis, database, job_id)
    if job_ids:
        await control.note(redis, "requeued",
                           f"{count} jobs that went dead during the outage re-queued",
                           count=count)
    return count


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
    """Empty the dead set (and its failure groups); return how many went."""
    return await deadset.clear_dead(redis)


async def retry_group(redis: ArqRedis, database: db.Database, fingerprint: str, *,
                      where: deadset.Where = "dead", queue: str = "") -> int:
    """Retry every job of one failure group as it is now: a dead one as :func:`retry_dead`
    does, one waiting to retry at once (:func:`run_now` on ``queue``); return how many."""
    job_ids = await deadset.group_members(redis, where, fingerprint, deadset.DEAD_MAX_ENTRIES)
    if where == "dead":
        return sum([await retry_dead(redis, database, job_id) for job_id in job_ids])
    return sum([await run_now(redis, queue, job_id) for job_id in job_ids])


async def delete_group(redis: ArqRedis, database: db.Database, fingerprint: str, *,
                       where: deadset.Where = "dead", queue: str = "") -> int:
    """Delete every job of one failure group: dead ones are forgotten, ones waiting to
    retry leave ``queue`` as :func:`delete_job` does; return how many."""
    job_ids = await deadset.group_members(redis, where, fingerprint, deadset.DEAD_MAX_ENTRIES)
    if where == "dead":
        return await deadset.remove_dead_many(redis, job_ids)
    return sum([await delete_job(redis, database, queue, job_id) for job_id in job_ids])


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
        await snippets.fail(database, redis, str(record.args[0]), revision_of(job_id),
                            record.error)
    return True


async def purge_dead(redis: ArqRedis, older_than: float) -> int:
    """Forget the dead jobs that failed more than ``older_than`` seconds ago; return how
    many went."""
    return await deadset.trim_dead(redis, deadset.DEAD_MAX_ENTRIES, older_than)


async def stop_job(redis: ArqRedis, queue: str, job_id: str,
                   wait: float = STOP_WAIT_SECONDS) -> StopOutcome:
    """Stop a queued, scheduled, retrying or running job through arq's abort (a running
    one is cancelled in its worker; a waiting one is dropped when a worker claims it).

    A highlight's snippet stays pending: the job is noted in :data:`snippets.STOPPED_JOBS`,
    so the reconciler does not bring it back, until :func:`requeue_job`. Returns
    "aborted" once a worker confirmed it within ``wait`` seconds, "requested" if none has
    yet (a paused queue, say: the abort stays asked for), "finished" if the job ended
    first, "not running" if it is not in Redis."""
    if not await job_is_live(redis, job_id):
        return "not running"
    now = time.time()
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(snippets.STOPPED_JOBS, {job_id: now})
        pipe.zremrangebyscore(snippets.STOPPED_JOBS, "-inf",
                              now - JOB_EXPIRES.total_seconds())
        pipe.zremrangebyrank(snippets.STOPPED_JOBS, 0, -STOPPED_MAX_ENTRIES - 1)
        await pipe.execute()
    await deadset.forget_job(redis, job_id)  # a retrying job no longer waits to retry
    job = Job(job_id, redis, _queue_name=queue, _deserializer=deserialize)
    try:
        aborted = await job.abort(timeout=wait, poll_delay=0.1)
    except TimeoutError:
        return "requested"
    if aborted:
        return "aborted"
    async with redis.pipeline(transaction=True) as pipe:  # it ended before the abort
        pipe.zrem(abort_jobs_ss, job_id)
        pipe.zrem(snippets.STOPPED_JOBS, job_id)
        await pipe.execute()
    return "finished"


async def stopped_at(redis: ArqRedis, job_id: str) -> float | None:
    """When an operator stopped the job (None if not stopped, or re-queued since)."""
    score = await redis.zscore(snippets.STOPPED_JOBS, job_id)
    return float(score) if score is not None else None


async def requeue_job(redis: ArqRedis, database: db.Database, queue: str, job_id: str) -> bool:
    """Enqueue a stopped (or otherwise lost) job again under the same job id, with its
    tries counted afresh. A highlight job goes back only while its snippet is still pending
    at the revision the id names (deferred to its highlight time, if still ahead), another
    job while its kept result still gives its function and arguments. False if the job is
    still in Redis or there is nothing to re-queue."""
    if await job_is_live(redis, job_id):
        return False
    target = highlight_target(job_id)
    run_at = None
    if target is not None:
        try:
            snippet = await db.get_snippet(database, target[0])
        except db.SnippetNotFound:
            snippet = None
        if snippet is None or (snippet.status, snippet.revision) != (db.PENDING, target[1]):
            await redis.zrem(snippets.STOPPED_JOBS, job_id)
            return False
        if snippet.highlight_at and snippet.highlight_at > db.utcnow():
            run_at = snippet.highlight_at
    else:
        kept = await redis.get(result_key_prefix + job_id)
        outcome = json.loads(kept) if kept else {}
        if not isinstance(outcome, dict) or not outcome.get("f"):
            return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(snippets.STOPPED_JOBS, job_id)
        pipe.zrem(abort_jobs_ss, job_id)  # or the worker would drop it again on claim
        pipe.delete(result_key_prefix + job_id)  # else arq refuses the same id
        await pipe.execute()
    await deadset.forget_job(redis, job_id)
    if target is not None:
        await enqueue_highlight(redis, *target, run_at)
    else:
        await redis.enqueue_job(str(outcome["f"]), *outcome.get("a", []), _job_id=job_id,
                                _expires=JOB_EXPIRES)
    return True


async def forget_lost_retries(redis: ArqRedis, grace: float = 300.0) -> int:
    """Drop retry records whose job is long overdue and no longer in Redis (the
    reconciler's third step); how many."""
    overdue = await redis.zrangebyscore(deadset.RETRY_SET, "-inf", time.time() - grace,
                                        start=0, num=500)
    forgotten = 0
    for job_id in overdue:
        if not await job_is_live(redis, job_id.decode()):
            await deadset.forget_job(redis, job_id.decode())
            forgotten += 1
    return forgotten
