"""The worker, defined once: :func:`worker_settings` gives the job functions under their
retry policies, the reconciler as an arq cron job, and the startup and shutdown that own
the per-process resources (database pool, the jobs' snippet store, one HTTP session, the
job counters, the heartbeat in the worker registry).

Two ways to run it, with the same settings:

- ``python -m tasks.runner`` (``run_worker.py``, ``snippet-service-worker``): under
  :class:`tasks.hotpath.BatchWorker`, kept up across Redis outages (:mod:`tasks.runner`);
- ``arq tasks.worker.WorkerSettings``: arq's own CLI and stock ``Worker``. ``WorkerSettings``
  is built from the environment when first looked up; a bad value stops the process with a
  message naming the variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from arq.cron import CronJob, cron
from arq.worker import Function
from redis.exceptions import RedisError

from snippet_service import workers
from snippet_service.config import Config, ConfigError
from snippet_service.db import database_ctx, transient_errors
from snippet_service.logs import setup_logging
from snippet_service.queue import EXPIRE_JOB, HIGHLIGHT_JOB, deserialize, redis_settings, serialize
from snippet_service.stats import JobCounter
from snippet_service.terminal import ANSI_JOB
from tasks.ansi import ansi_failed, ansi_policy, ansi_snippet
from tasks.breaker import BREAKER_CTX, BreakerWatch
from tasks.client import HighlighterRejected, HighlighterUnavailable, client_session
from tasks.highlight import expire_snippet, highlight_failed, highlight_snippet
from tasks.policy import job
from tasks.reconcile import reconcile
from tasks.retry import RetryPolicy
from tasks.store import SnippetStore

logger = logging.getLogger("tasks.worker")

# What a lost or hanging Redis connection raises (redis-py wraps socket errors).
REDIS_ERRORS = (RedisError, ConnectionError, TimeoutError)
STATS_FLUSH_SECONDS = 1.0
# The most a stopping worker waits for Redis to take its last words (leaving the worker
# registry, the last job counts): with Redis gone or hanging it stops anyway.
REDIS_CLEANUP_SECONDS = 1.0
RECONCILE_CRON = "cron:reconcile"
_RESOURCES = "resources"  # ctx key of what startup opened, for shutdown to close


class QuietJobLines(logging.Filter):
    """Drops arq's two INFO lines per job (start and finish): at hundreds of jobs a second
    they cost more CPU than the jobs; retries, failures and start-up still show, and the
    dashboard has the counts."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not (
            isinstance(record.msg, str) and ("→" in record.msg or "←" in record.msg)
        )


def highlight_policy(config: Config) -> RetryPolicy:
    """The highlight job retries while the highlighter is unavailable (connection errors,
    timeouts, 429/5xx) and gives up at once when it refuses the snippet."""
    return RetryPolicy(retry=config.highlight_retries, timeout=config.job_timeout,
                       retry_on=(HighlighterUnavailable,), fails_on=(HighlighterRejected,))


def expire_policy(config: Config) -> RetryPolicy:
    """The delete of an expiring snippet retries while the database is busy, restarting
    or out of reach."""
    return RetryPolicy(retry=5, timeout=config.job_timeout,
                       retry_on=transient_errors(config))


def functions(config: Config) -> list[Function]:
    """Every job function with its retry policy."""
    return [
        job(highlight_snippet, name=HIGHLIGHT_JOB, on_dead=highlight_failed,
            policy=highlight_policy(config), breaker=True),
        job(expire_snippet, name=EXPIRE_JOB, policy=expire_policy(config)),
        job(ansi_snippet, name=ANSI_JOB, on_dead=ansi_failed, policy=ansi_policy(config)),
    ]


async def reconcile_snippets(ctx: dict[str, Any]) -> int:
    """The reconciler's pass (:func:`tasks.reconcile.reconcile`) as a cron job."""
    return await reconcile(ctx["db"], ctx["redis"], ctx["config"])


def reconcile_seconds(interval: float) -> set[int]:
    """The seconds of each minute the reconciler runs at: arq's cron takes whole seconds of
    the minute, so RECONCILE_INTERVAL is rounded to whole seconds (at least 1) and counted
    from the top of each minute; when it does not divide 60, the minute's last gap is
    shorter (7 s: 0, 7, … 56, then 0 four seconds later)."""
    return set(range(0, 60, max(1, round(interval))))


def cron_jobs(config: Config) -> list[CronJob]:
    """The reconciler: one pass every RECONCILE_INTERVAL seconds in the whole cluster
    (``unique``: the workers enqueue the same job id for the same time), and one as each
    worker starts. Its timeout is the highlight job's, so arq's in-progress timeout (crash
    recovery) stays JOB_TIMEOUT-based."""
    return [cron(reconcile_snippets, name=RECONCILE_CRON,
                 second=reconcile_seconds(config.reconcile_interval), run_at_startup=True,
                 unique=True, timeout=config.job_timeout + 5)]


async def _repeat(seconds: float, action: Callable[[], Awaitable[None]], what: str) -> None:
    """Run action now and every few seconds; a failed round is logged, not the end."""
    while True:
        try:
            await action()
        except REDIS_ERRORS as exc:
            logger.debug("%s skipped: %r", what, exc)
        except Exception:  # a bad round must not end the loop for good
            logger.exception("%s failed; trying again in %.0fs", what, seconds)
        await asyncio.sleep(seconds)


async def job_started(ctx: dict[str, Any]) -> None:
    """arq's on_job_start: the job shows as running at the next heartbeat."""
    ctx["running"][ctx["job_id"]] = workers.RunningJob(ctx["job_id"], time.time(),
                                                      int(ctx.get("job_try", 1)))


async def job_ended(ctx: dict[str, Any]) -> None:
    """arq's on_job_end."""
    ctx["running"].pop(ctx["job_id"], None)


def _beat(ctx: dict[str, Any], info: workers.WorkerInfo) -> Callable[[], Awaitable[None]]:
    config: Config = ctx["config"]
    running: dict[str, workers.RunningJob] = ctx["running"]
    longest = config.job_timeout + 15  # no run lasts longer; a job cut off twice skips job_ended

    async def beat() -> None:
        since = time.time() - longest
        for job_id in [job_id for job_id, run in running.items() if run.started_at < since]:
            del running[job_id]
        info.running = list(running.values())
        await workers.heartbeat(ctx["redis"], info)

    return beat


async def _last_words(ctx: dict[str, Any], info: workers.WorkerInfo) -> None:
    """Leave the worker registry and write the last job counts, if Redis answers soon."""
    try:
        async with asyncio.timeout(REDIS_CLEANUP_SECONDS):
            await workers.unregister(ctx["redis"], info.worker_id)
            await ctx["stats"].flush(ctx["redis"])
    except REDIS_ERRORS as exc:
        logger.info("could not leave the worker registry: %r", exc)


async def _stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def startup(ctx: dict[str, Any]) -> None:
    """arq's on_startup: open the resources jobs share through ctx (``ctx["redis"]`` is
    arq's pool), start the heartbeat, the job counters' flush and the breaker's reports
    and probes (tasks/breaker.py)."""
    config: Config = ctx["config"]
    async with AsyncExitStack() as stack:
        ctx["db"] = database = await stack.enter_async_context(database_ctx(config))
        ctx["snippets"] = store = SnippetStore(database)
        stack.push_async_callback(store.close)  # commits the results still waiting
        ctx["http"] = await stack.enter_async_context(
            client_session(limit=config.worker_max_jobs))
        ctx["stats"] = JobCounter()
        ctx["running"] = {}
        ctx[BREAKER_CTX] = watch = BreakerWatch(config)
        info = workers.new_worker_info(config.worker_max_jobs, config.queue_name,
                                       config.host_name, config.worker_live_within)
        stack.push_async_callback(_last_words, ctx, info)
        # Tasks of this process, not cron jobs: a cron job runs on whichever worker claims
        # it, and each process must beat for itself and flush its own counts.
        for task in (
            asyncio.create_task(_repeat(info.beat_seconds, _beat(ctx, info), "heartbeat")),
            asyncio.create_task(watch.run(ctx)),
            asyncio.create_task(_repeat(STATS_FLUSH_SECONDS,
                                        lambda: ctx["stats"].flush(ctx["redis"]), "stats flush")),
        ):
            stack.push_async_callback(_stop_task, task)
        ctx[_RESOURCES] = stack.pop_all()


async def shutdown(ctx: dict[str, Any]) -> None:
    """arq's on_shutdown: stop the heartbeat, leave the registry (if Redis answers within
    REDIS_CLEANUP_SECONDS), commit waiting results and close what startup opened. Safe to
    call again, or when startup never ran."""
    resources: AsyncExitStack | None = ctx.pop(_RESOURCES, None)
    if resources is not None:
        await resources.aclose()


def worker_settings(config: Config) -> dict[str, Any]:
    """The worker, for arq's ``Worker(**settings)`` (and ``arq`` as ``WorkerSettings``)."""
    return {
        "functions": functions(config),
        "cron_jobs": cron_jobs(config),
        "redis_settings": redis_settings(config),
        "queue_name": config.queue_name,
        "max_jobs": config.worker_max_jobs,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "keep_result": 600,
        "poll_delay": 0.02,
        "health_check_interval": 10,
        # SIGINT/SIGTERM: running jobs get this long, then are cancelled (and run again)
        "job_completion_wait": config.worker_shutdown_grace,
        "log_results": False,
        "allow_abort_jobs": True,
        "on_startup": startup,
        "on_shutdown": shutdown,
        "on_job_start": job_started,
        "on_job_end": job_ended,
        "ctx": {"config": config},
    }


def process_config() -> Config:
    """A worker process's start: logging (LOG_FORMAT, without arq's two lines per job) and
    the configuration; a bad value exits, naming the variable."""
    setup_logging()
    logging.getLogger("arq.worker").addFilter(QuietJobLines())
    return read_config()


def read_config() -> Config:
    """The environment's configuration; a bad value exits, naming the variable."""
    try:
        return Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


def __getattr__(name: str) -> Any:
    """``WorkerSettings``: :func:`worker_settings` of the environment, built when first
    looked up (by ``arq tasks.worker.WorkerSettings``), so that importing this module reads
    no configuration and a bad value stops the worker naming the variable."""
    if name != "WorkerSettings":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    settings = globals()["WorkerSettings"] = worker_settings(read_config())
    return settings
