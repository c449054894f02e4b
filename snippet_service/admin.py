"""The queue's command line: ``python -m snippet_service.admin COMMAND``.

Commands: ``stats``; ``pause [QUEUE]`` and ``resume [QUEUE]``; ``retry-dead [--group
FINGERPRINT]``; ``purge-dead --older-than 7d``; ``requeue-pending`` (the reconciler's pass,
now). Each answers in text, or in JSON with ``--json``. It reads REDIS_URL, DATABASE_URL and
SNIPPETS_DB like the services and does what the dashboard's buttons do (:mod:`jobops`,
:mod:`control`). Exit status: 0 done, 1 failed (Redis or the database unreachable, a bad
setting), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from snippet_service import control, db, deadset, jobops, snippets, stats, workers
from snippet_service.config import Config, ConfigError, mask_url
from snippet_service.logs import setup_logging
from snippet_service.queue import RedisRefused, redis_ctx

logger = logging.getLogger("snippet_service.admin")

REDIS_ERRORS = (RedisError, OSError, TimeoutError)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")

Result = dict[str, Any]


def duration(raw: str) -> float:
    """``30s``, ``30m``, ``12h``, ``7d`` or ``2w`` in seconds (argparse type)."""
    match = _DURATION.fullmatch(raw.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a duration: a number and s, m, h, d or w (30m, 12h, 7d)")
    return float(match.group(1)) * UNITS[match.group(2)]


class Tools:
    """What a command works with: the settings, Redis, and the database opened on first
    use (most commands need only Redis)."""

    def __init__(self, config: Config, redis: ArqRedis, stack: AsyncExitStack) -> None:
        self.config, self.redis, self._stack = config, redis, stack
        self._database: db.Database | None = None

    async def database(self) -> db.Database:
        if self._database is None:
            try:
                self._database = await self._stack.enter_async_context(
                    db.database_ctx(self.config))
            except Exception as exc:  # unreachable, a wrong password, no such database...
                raise DatabaseUnreachable(f"{type(exc).__name__}: {exc}") from exc
        return self._database


async def cmd_stats(tools: Tools, args: argparse.Namespace) -> Result:
    redis, queue = tools.redis, tools.config.queue_name
    now_ms = int(time.time() * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(queue)
        pipe.zcount(queue, "-inf", now_ms)
        pipe.zrangebyscore(queue, "-inf", now_ms, start=0, num=1, withscores=True)
        pipe.zcard(deadset.RETRY_SET)
        pipe.zcard(deadset.DEAD_SET)
        size, ready, oldest, retrying, dead = await pipe.execute()
    processed, failed = await stats.totals(redis)
    paused = await control.paused(redis)
    breaker = await control.breaker_state(redis)
    return {
        "processed": processed,
        "failed": failed,
        "queue": {"name": queue, "size": int(size), "ready": int(ready),
                  "scheduled": int(size) - int(ready),
                  "latency": round(max(0.0, (now_ms - oldest[0][1]) / 1000), 3) if oldest
                  else 0.0,
                  "paused_since": paused.get(queue)},
        "retrying": int(retrying),
        "dead": int(dead),
        "workers": len(await workers.live_workers(redis)),
        "paused": paused,
        "breaker": breaker.as_dict(),
    }


async def _known_queue(tools: Tools, queue: str | None) -> str:
    name = queue or tools.config.queue_name
    if name != tools.config.queue_name and await tools.redis.type(name) != b"zset":
        raise UsageError(f"no queue named {name!r} (this deployment's is "
                         f"{tools.config.queue_name!r}, QUEUE_NAME)")
    return name


async def cmd_pause(tools: Tools, args: argparse.Namespace) -> Result:
    queue = await _known_queue(tools, args.queue)
    newly = await control.pause(tools.redis, queue, by=f"admin command line "
                                f"({getpass.getuser()}@{tools.config.host_name})")
    since = (await control.paused(tools.redis)).get(queue)
    return {"queue": queue, "paused": True, "was_paused": not newly, "since": since}


async def cmd_resume(tools: Tools, args: argparse.Namespace) -> Result:
    queue = await _known_queue(tools, args.queue)
    was_paused = await control.resume(tools.redis, queue)
    return {"queue": queue, "paused": False, "was_paused": was_paused}


async def cmd_retry_dead(tools: Tools, args: argparse.Namespace) -> Result:
    database = await tools.database()
    if args.group:
        if await deadset.get_group(tools.redis, "dead", args.group) is None:
            raise UsageError(f"no failure group {args.group!r} among the dead jobs")
        retried = await jobops.retry_group(tools.redis, database, args.group)
        return {"retried": retried, "group": args.group}
    return {"retried": await jobops.retry_all_dead(tools.redis, database)}


async def cmd_purge_dead(tools: Tools, args: argparse.Namespace) -> Result:
    purged = await jobops.purge_dead(tools.redis, args.older_than)
    return {"purged": purged, "older_than_seconds": args.older_than,
            "dead": await deadset.dead_count(tools.redis)}


async def cmd_requeue_pending(tools: Tools, args: argparse.Namespace) -> Result:
    database = await tools.database()
    older_than = tools.config.reconcile_after if args.older_than is None else args.older_than
    expired = await snippets.expire_overdue(database)
    requeued = await snippets.requeue_lost(database, tools.redis, older_than)
    forgotten = await jobops.forget_lost_retries(tools.redis)
    return {"requeued": requeued, "expired": expired, "older_than_seconds": older_than,
            "retry_records_forgotten": forgotten}


Command = Callable[[Tools, argparse.Namespace], Awaitable[Result]]


class UsageError(Exception):
    """The command line names something that is not there (exit status 2)."""


class DatabaseUnreachable(Exception):
    """The database could not be opened."""


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m snippet_service.admin",
        description="Operate the snippet service's job queue (the settings come from the "
                    "environment, as for the services).")
    top.add_argument("--json", action="store_true", help="answer in JSON")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                             help="answer in JSON")
        command.set_defaults(run=run)
        return command

    add("stats", cmd_stats, "processed and failed totals, queue, scheduled, retrying and "
        "dead counts, live workers, paused queues and the breaker")
    for name, run, verb in (("pause", cmd_pause, "stop workers claiming"),
                            ("resume", cmd_resume, "let workers claim again")):
        add(name, run, f"{verb} the queue's jobs").add_argument(
            "queue", nargs="?", help="the queue (default: QUEUE_NAME, snippets:queue)")
    add("retry-dead", cmd_retry_dead, "retry every dead job, or one failure group's").add_argument(
        "--group", metavar="FINGERPRINT", help="only the dead jobs of this failure group")
    add("purge-dead", cmd_purge_dead, "forget dead jobs older than a duration").add_argument(
        "--older-than", type=duration, required=True, metavar="DURATION",
        help="30m, 12h, 7d, 2w, …")
    add("requeue-pending", cmd_requeue_pending,
        "run the reconciler's pass now: re-enqueue pending snippets whose job was lost, "
        "delete expired ones").add_argument(
        "--older-than", type=duration, default=None, metavar="DURATION",
        help="pending at least this long (default: RECONCILE_AFTER, 60 s)")
    return top


def render(result: Result, as_json: bool) -> str:
    if as_json:
        return json.dumps(result, indent=2, sort_keys=True)
    lines = []
    for key, value in result.items():
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines += [f"  {name}: {_text(item)}" for name, item in value.items()]
        else:
            lines.append(f"{key}: {_text(value)}")
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value > 1e9:  # an epoch time
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    if isinstance(value, dict | list):
        return json.dumps(value) if value else "none"
    return str(value)


async def run(config: Config, args: argparse.Namespace) -> Result:
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_ctx(config))
        result: Result = await args.run(Tools(config, redis, stack), args)
        return result


def main(argv: list[str] | None = None) -> int:
    """The command line's entry point; returns the exit status."""
    args = parser().parse_args(argv)  # a usage error exits 2 here
    setup_logging(logging.WARNING)
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 1
    try:
        result = asyncio.run(run(config, args))
    except UsageError as exc:
        print(f"{parser().prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except RedisRefused as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    except DatabaseUnreachable as exc:
        where = "PostgreSQL (DATABASE_URL)" if config.database_url else str(config.db_path)
        print(f"failed: the database {where} could not be opened ({exc})", file=sys.stderr)
        return 1
    except REDIS_ERRORS as exc:
        print(f"failed: Redis at {mask_url(config.redis_url)}: "
              f"{exc or type(exc).__name__}", file=sys.stderr)
        return 1
    print(render(result, args.json))
    return 0


if __name__ == "__main__":
    sys.exit(main())
