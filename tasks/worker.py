"""The arq worker: job functions under their retry policies, and the settings.

``run_worker.py`` runs it under :mod:`tasks.runner`, which keeps it up across Redis outages.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any

from arq.worker import Function

from snippet_service.config import Config, ConfigError
from snippet_service.db import Database
from snippet_service.queue import (
    EXPIRE_JOB,
    HIGHLIGHT_JOB,
    deserialize,
    redis_settings,
    serialize,
)
from snippet_service.stats import JobCounter
from tasks.client import client_session
from tasks.highlight import expire_snippet, highlight_failed, highlight_snippet
from tasks.policy import job
from tasks.retry import RetryPolicy
from tasks.store import SnippetStore

STATS_FLUSH_SECONDS = 1.0


class QuietJobLines(logging.Filter):
    """Drops arq's two INFO lines per job (start and finish): at hundreds of jobs a second
    they cost more CPU than the jobs; retries, failures and start-up still show, and the
    dashboard has the counts."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not (
            isinstance(record.msg, str) and ("→" in record.msg or "←" in record.msg)
        )


def functions(config: Config) -> list[Function]:
    """Every job function with its retry policy (``retry=False`` would be one try)."""
    return [
        job(highlight_snippet, name=HIGHLIGHT_JOB, on_dead=highlight_failed,
            policy=RetryPolicy(retry=config.highlight_retries, timeout=config.job_timeout)),
        job(expire_snippet, name=EXPIRE_JOB,
            policy=RetryPolicy(retry=5, timeout=config.job_timeout)),
    ]


async def open_resources(ctx: dict[str, Any], stack: AsyncExitStack) -> None:
    """The per-process resources jobs share through ctx: the database pool and one session."""
    config: Config = ctx["config"]
    database = Database(config.db_path, config.db_pool_size)
    await database.open()
    stack.push_async_callback(database.close)
    ctx["db"] = database
    ctx["snippets"] = store = SnippetStore(database)
    stack.push_async_callback(store.close)
    ctx["http"] = await stack.enter_async_context(client_session(limit=config.worker_max_jobs))
    ctx["stats"] = JobCounter()


async def startup(ctx: dict[str, Any]) -> None:
    """For ``arq tasks.worker.WorkerSettings``: open the resources."""
    ctx.setdefault("config", Config.from_env())  # raises, naming a bad variable
    stack = ctx["exit_stack"] = AsyncExitStack()
    await open_resources(ctx, stack)

    async def flush_stats() -> None:
        while True:
            await asyncio.sleep(STATS_FLUSH_SECONDS)
            await ctx["stats"].flush(ctx["redis"])

    task = asyncio.create_task(flush_stats())
    stack.push_async_callback(ctx["stats"].flush, ctx["redis"])
    stack.callback(task.cancel)


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what startup opened."""
    await ctx["exit_stack"].aclose()


def worker_options(config: Config) -> dict[str, Any]:
    """The arq Worker arguments for this configuration."""
    return {
        "functions": functions(config),
        "redis_settings": redis_settings(config),
        "queue_name": config.queue_name,
        "max_jobs": config.worker_max_jobs,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "keep_result": 600,
        "poll_delay": 0.02,
        "health_check_interval": 10,
        "job_completion_wait": int(config.worker_shutdown_grace),
        "log_results": False,
        "allow_abort_jobs": True,
    }


def _env_config() -> Config:
    """The environment's configuration; with a bad value, the defaults here and startup()
    then stops the worker with the error."""
    try:
        return Config.from_env()
    except ConfigError:
        return Config()


_ENV = _env_config()


class WorkerSettings:
    """For ``arq tasks.worker.WorkerSettings``, read from the environment like
    run_worker.py, but without its outage handling, heartbeat and reconciler: prefer
    ``python run_worker.py``."""

    functions = functions(_ENV)
    redis_settings = redis_settings(_ENV)
    on_startup = startup
    on_shutdown = shutdown
    job_serializer = serialize
    job_deserializer = deserialize
    queue_name = _ENV.queue_name
    max_jobs = _ENV.worker_max_jobs
    keep_result = 600
    poll_delay = 0.02
    health_check_interval = 10
