"""The finish batch: the Redis writes of every job that finished within one loop tick, with
the news jobs announce (one PUBLISH per channel for the whole batch) and their other
bookkeeping, sent by :class:`tasks.hotpath.BatchWorker` as one script call.

Commands travel as data: one JSON argument that a Lua script runs command by command, as
atomically as MULTI/EXEC, so the client packs one argument per batch instead of several per
job (packing and parsing a MULTI/EXEC of five commands a job was most of a job's cost).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from arq.worker import Worker
from redis.asyncio import Redis

from snippet_service import stats
from snippet_service.batching import Batcher

# ctx key under which a running job finds the worker's finish batch.
FINISH_BATCH = "finish_batch"

# One Redis command: its name and arguments, as strings.
Command = list[str]

# A command ["IF=", key, value, n] runs the n commands after it only while key holds value.
_RUN = """
local commands = cjson.decode(ARGV[1])
local skip = 0
for _, command in ipairs(commands) do
  if skip > 0 then
    skip = skip - 1
  elseif command[1] == 'IF=' then
    if redis.call('GET', command[2]) ~= command[3] then skip = tonumber(command[4]) end
  else
    redis.call(unpack(command))
  end
end
return #commands
"""


def command(*parts: str | bytes | int) -> Command:
    """A command for :class:`FinishBatch`; bytes must be ASCII (our payloads are JSON)."""
    return [part.decode("ascii") if isinstance(part, bytes) else str(part) for part in parts]


def guarded(key: str, value: str | None, commands: list[Command]) -> list[Command]:
    """``commands`` to run only while ``key`` holds ``value`` (all of them if value is None):
    a job's finish, checked against the claim in its in-progress key."""
    if value is None:
        return commands
    return [["IF=", key, value, str(len(commands))], *commands]


def finished_entry(job_id: str, function: str, outcome: str, started_ms: int,
                   finished_ms: int) -> Command:
    """The command entering a finished run in the finished-jobs list (stats.FINISHED)."""
    member = stats.finished_member(job_id, function, outcome, (finished_ms - started_ms) / 1000)
    return command("ZADD", stats.FINISHED, f"{finished_ms / 1000:.3f}", member)


def run_outcome(success: bool, result: Any) -> str:
    """How a finished run ended, for the finished-jobs list: a job that returned its
    policy's "dead: …" (tasks.policy) is dead; a cancelled one was aborted."""
    if success:
        dead = isinstance(result, str) and result.startswith("dead: ")
        return stats.DEAD if dead else stats.SUCCESS
    return "aborted" if isinstance(result, asyncio.CancelledError) else "failed"


async def run_commands(redis: Redis, commands: Sequence[Command]) -> None:
    """Run the commands in one MULTI/EXEC (where there is no finish batch)."""
    async with redis.pipeline(transaction=True) as pipe:
        for parts in commands:
            pipe.execute_command(*parts)
        await pipe.execute()


class FinishBatch:
    """Redis writes of finished jobs, sent together: one script call per loop tick."""

    def __init__(self, worker: Worker, delay: float,
                 trim: Callable[[], list[Command]] | None = None) -> None:
        self._worker = worker
        self._trim = trim  # commands run after each batch's (the finished-jobs list's trim)
        self._announcements: dict[str, list[str]] = {}
        self._extra: list[Command] = []
        self._script: Any = None
        self._batcher: Batcher[list[Command], None] = Batcher(
            self._flush, delay=delay, max_size=1000, name="finish-batch"
        )

    def announce(self, channel: str, message: str) -> None:
        """Publish ``message`` on ``channel`` with the next batch (joined by commas)."""
        self._announcements.setdefault(channel, []).append(message)

    def add(self, commands: Sequence[Command]) -> None:
        """Send these commands with the next batch, without waiting for it."""
        self._extra.extend(commands)

    async def submit(self, commands: list[Command]) -> None:
        """Add a finished job's commands to the next batch; wait until it has run."""
        await self._batcher.submit(commands)

    async def _flush(self, batches: Sequence[list[Command]]) -> list[None]:
        announcements, self._announcements = self._announcements, {}
        extra, self._extra = self._extra, []
        commands = [*extra, *(parts for batch in batches for parts in batch)]
        commands += [["PUBLISH", channel, ",".join(messages)]
                     for channel, messages in announcements.items()]
        if self._trim is not None:
            commands += self._trim()
        pool = self._worker.pool
        if self._script is None:
            self._script = pool.register_script(_RUN)
        await self._script(args=[json.dumps(commands, separators=(",", ":"))])
        return [None] * len(batches)

    async def close(self) -> None:
        await self._batcher.close()


async def announce(ctx: dict[str, Any], channel: str, message: str) -> None:
    """Publish a job's news: with the worker's finish batch under :class:`BatchWorker`,
    at once under arq's stock worker."""
    batch: FinishBatch | None = ctx.get(FINISH_BATCH)
    if batch is not None:
        batch.announce(channel, message)
    else:
        await ctx["redis"].publish(channel, message)


async def finish_with_job(ctx: dict[str, Any], commands: Sequence[Command]) -> None:
    """Redis bookkeeping of a job that succeeded: sent with the batch that finishes the job
    under :class:`BatchWorker`, in a MULTI/EXEC of its own at once under arq's stock
    worker."""
    batch: FinishBatch | None = ctx.get(FINISH_BATCH)
    if batch is not None:
        batch.add(commands)
    else:
        await run_commands(ctx["redis"], commands)


async def shielded(finishing: Awaitable[None]) -> None:
    """Await a job's finish so that cancelling the job cannot cut it in half. When the job
    was cancelled meanwhile (a worker stopping with Redis gone), a finish that then fails
    has nobody awaiting it: its error is taken here, the job stays in Redis and runs again,
    rather than asyncio reporting "Task exception was never retrieved" at exit."""
    task = asyncio.ensure_future(finishing)
    task.add_done_callback(_take_error)
    await asyncio.shield(task)


def _take_error(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()
