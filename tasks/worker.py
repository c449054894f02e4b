"""The arq worker: settings, and the per-process resources jobs share through ctx."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from arq.worker import func

from snippet_service.client import client_session
from snippet_service.config import Config
from snippet_service.db import Database
from snippet_service.queue import HIGHLIGHT_JOB, deserialize, serialize
from tasks.highlight import MAX_TRIES, highlight_snippet


async def startup(ctx: dict[str, Any]) -> None:
    """Open the database pool and the one HTTP session of this process."""
    config = ctx.get("config") or Config.from_env()
    ctx["config"] = config
    stack = AsyncExitStack()
    ctx["exit_stack"] = stack
    database = Database(config.db_path, config.db_pool_size)
    await database.open()
    stack.push_async_callback(database.close)
    ctx["db"] = database
    ctx["http"] = await stack.enter_async_context(client_session(limit=config.worker_max_jobs))


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close what startup opened."""
    stack: AsyncExitStack | None = ctx.get("exit_stack")
    if stack is not None:
        await stack.aclose()


class WorkerSettings:
    """Run with ``python run_worker.py`` (which applies the environment's configuration)."""

    functions = [func(highlight_snippet, name=HIGHLIGHT_JOB, max_tries=MAX_TRIES, timeout=60)]
    on_startup = startup
    on_shutdown = shutdown
    job_serializer = serialize
    job_deserializer = deserialize
    keep_result = 600
    poll_delay = 0.05
    max_jobs = 200
    queue_name = Config.queue_name


def worker_options(config: Config) -> dict[str, Any]:
    """The arq Worker arguments this configuration changes."""
    from snippet_service.queue import redis_settings

    return {
        "redis_settings": redis_settings(config),
        "max_jobs": config.worker_max_jobs,
        "queue_name": config.queue_name,
        "ctx": {"config": config},
    }
