"""The grace after a stop signal, in the worker class itself: running jobs finish within
it; a running cron job (the reconciler's sweep, stuck here) does not hold the stop."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool
from arq.cron import cron
from arq.jobs import Job, JobStatus
from arq.worker import func

from snippet_service.queue import deserialize, serialize
from tasks.hotpath import BatchWorker
from tests.conftest import fresh_redis_url

GRACE = 10.0
JOB_SECONDS = 0.5


# arq's Worker.close() calls redis-py's deprecated close().
@pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")
async def test_the_grace_waits_for_jobs_not_for_a_stuck_cron_job(valkey: str) -> None:
    settings = RedisSettings.from_dsn(fresh_redis_url(valkey))
    sweep_started, job_started = asyncio.Event(), asyncio.Event()
    sweep_cancelled = asyncio.Event()

    async def stuck_sweep(ctx: dict[str, Any]) -> None:
        sweep_started.set()
        try:
            await asyncio.Event().wait()  # a sweep waiting on something that never answers
        except asyncio.CancelledError:
            sweep_cancelled.set()
            raise

    async def slow_job(ctx: dict[str, Any]) -> str:
        job_started.set()
        await asyncio.sleep(JOB_SECONDS)
        return "done"

    worker = BatchWorker(
        functions=[func(slow_job, name="slow_job")],
        cron_jobs=[cron(stuck_sweep, name="cron:stuck", run_at_startup=True, unique=True,
                        timeout=60)],
        redis_settings=settings, handle_signals=False, job_completion_wait=GRACE,
        poll_delay=0.05, job_serializer=serialize, job_deserializer=deserialize)
    redis = await create_pool(settings, job_serializer=serialize, job_deserializer=deserialize)
    running = asyncio.create_task(worker.async_run())
    try:
        async with asyncio.timeout(10):
            await sweep_started.wait()
            job = await redis.enqueue_job("slow_job")
            assert job is not None
            await job_started.wait()
        stopped_at = time.monotonic()
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
        await asyncio.wait_for(asyncio.gather(running, return_exceptions=True), GRACE + 5)
        took = time.monotonic() - stopped_at
        # The job finished within the grace; the sweep was cancelled as soon as it had.
        assert await Job(job.job_id, redis).status() == JobStatus.complete
        assert await job.result(timeout=1) == "done"
        assert sweep_cancelled.is_set()
        assert took < GRACE / 2, f"the stop took {took:.1f}s"
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await worker.close()  # what the worker process does on its way out
        await redis.aclose(close_connection_pool=True)
