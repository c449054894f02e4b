"""Runs the arq worker so that it stays up: Redis outages are waited out with backoff,
SIGTERM lets running jobs finish within WORKER_SHUTDOWN_GRACE, and a heartbeat and the
reconciler run beside it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import time
from contextlib import AsyncExitStack
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from snippet_service import workers
from snippet_service.config import Config
from snippet_service.queue import open_pool
from tasks.hotpath import BatchWorker
from tasks.reconcile import reconcile
from tasks.worker import STATS_FLUSH_SECONDS, open_resources, worker_options

logger = logging.getLogger("tasks.runner")

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
MAX_BACKOFF_SECONDS = 5.0
M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX would), before any thread starts.

    Each aiosqlite connection thread would otherwise get an arena of its own, which holds
    on to the memory of every batch of rows it ever built: about 3 MB of resident memory
    with 1,000 jobs in flight. The threads take turns under the GIL anyway, so two arenas
    cost no speed. Elsewhere than glibc this does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


class Runner:
    """One worker process: arq's Worker, rebuilt whenever the Redis connection is lost."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.ctx: dict[str, Any] = {"config": config}
        self.info = workers.new_worker_info(config.worker_max_jobs, config.queue_name)
        self.worker: BatchWorker | None = None
        self.stopping = asyncio.Event()
        self.running: dict[str, workers.RunningJob] = {}

    def stop(self, signum: signal.Signals) -> None:
        """First signal: stop taking jobs, let running ones finish within the grace period."""
        if self.stopping.is_set():
            return
        logger.info("%s: stopping (grace %.0fs for running jobs)", signum.name,
                    self.config.worker_shutdown_grace)
        self.stopping.set()
        if self.worker is not None and self.worker.main_task is not None:
            self.worker.handle_sig_wait_for_completion(signum)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop, signum)
        async with AsyncExitStack() as stack:
            await open_resources(self.ctx, stack)
            side_tasks = [asyncio.create_task(self._every(workers.HEARTBEAT_SECONDS,
                                                          self._heartbeat)),
                          asyncio.create_task(self._every(self.config.reconcile_interval,
                                                          self._reconcile)),
                          asyncio.create_task(self._every(STATS_FLUSH_SECONDS,
                                                          self.ctx["stats"].flush))]
            try:
                await self._run_workers()
            finally:
                for task in side_tasks:
                    task.cancel()
                await asyncio.gather(*side_tasks, return_exceptions=True)
                await self._unregister()

    async def _run_workers(self) -> None:
        backoff = 0.5
        while not self.stopping.is_set():
            worker = BatchWorker(**worker_options(self.config), handle_signals=False,
                            ctx=dict(self.ctx), on_job_start=self._job_started,
                            after_job_end=self._job_ended)
            self.worker = worker
            try:
                await worker.async_run()
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
            except REDIS_ERRORS as exc:
                logger.warning("Redis connection lost (%r); reconnecting in %.1fs", exc, backoff)
                await self._abandon(worker)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            backoff = 0.5
            with contextlib.suppress(*REDIS_ERRORS):
                await worker.close()
            logger.info("worker stopped: %r", worker)
            return

    async def _abandon(self, worker: BatchWorker) -> None:
        """Cancel a broken worker's jobs: they stay queued and run again once Redis is back."""
        for task in worker.tasks.values():
            task.cancel()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        pool = worker._pool  # None when the worker never got a connection
        if pool is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await asyncio.wait_for(pool.aclose(close_connection_pool=True), 2)

    def _pool(self) -> ArqRedis | None:
        worker = self.worker
        return worker._pool if worker is not None else None

    async def _every(self, seconds: float, action: Any) -> None:
        """Run action every few seconds while a Redis connection is up."""
        while True:
            pool = self._pool()
            if pool is None:
                await asyncio.sleep(0.2)
                continue
            try:
                await action(pool)
            except REDIS_ERRORS as exc:
                logger.debug("%s skipped: %r", action.__name__, exc)
            except Exception:  # a bad pass must not end the loop for good
                logger.exception("%s failed; trying again in %.0fs", action.__name__, seconds)
            await asyncio.sleep(seconds)

    async def _job_started(self, ctx: dict[str, Any]) -> None:
        self.running[ctx["job_id"]] = workers.RunningJob(
            ctx["job_id"], time.time(), int(ctx.get("job_try", 1))
        )

    async def _job_ended(self, ctx: dict[str, Any]) -> None:
        self.running.pop(ctx["job_id"], None)

    async def _heartbeat(self, pool: ArqRedis) -> None:
        worker = self.worker
        live = set(worker.job_tasks) if worker is not None else set()
        for job_id in set(self.running) - live:  # cancelled jobs skip after_job_end
            del self.running[job_id]
        self.info.running = list(self.running.values())
        await workers.heartbeat(pool, self.info)

    async def _reconcile(self, pool: ArqRedis) -> None:
        await reconcile(self.ctx["db"], pool, self.config)

    async def _unregister(self) -> None:
        """Leave the registry, and write the last job counts."""
        with contextlib.suppress(*REDIS_ERRORS):
            pool = await open_pool(self.config)
            try:
                await workers.unregister(pool, self.info.worker_id)
                await self.ctx["stats"].flush(pool)
            finally:
                await pool.aclose(close_connection_pool=True)


async def check(config: Config) -> int:
    """Exit status for ``run_worker.py --check``: 0 while a worker is alive."""
    try:
        pool = await open_pool(config)
        try:
            live = await workers.live_workers(pool)
        finally:
            await pool.aclose(close_connection_pool=True)
    except REDIS_ERRORS as exc:
        print(f"unhealthy: Redis unreachable ({exc})")
        return 1
    if not live:
        print(f"unhealthy: no worker has beaten in {workers.LIVE_WITHIN:.0f}s")
        return 1
    for info in live:
        print(f"healthy: worker {info.worker_id} running {len(info.running)} jobs")
    return 0
