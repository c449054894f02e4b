"""The finish batch: the Redis writes of every job that finished within one short tick,
sent as one MULTI/EXEC by :class:`tasks.hotpath.BatchWorker`, with the news jobs announce
(one PUBLISH per channel for the whole batch) and their other bookkeeping."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from arq.worker import Worker
from redis.asyncio.client import Pipeline

from snippet_service.batching import Batcher

# ctx key under which a running job finds the worker's finish batch.
FINISH_BATCH = "finish_batch"

PipelineOp = Callable[[Pipeline], object]


class FinishBatch:
    """Redis writes of finished jobs, sent together: one MULTI/EXEC per short tick."""

    def __init__(self, worker: Worker, delay: float) -> None:
        self._worker = worker
        self._announcements: dict[str, list[str]] = {}
        self._extra: list[PipelineOp] = []
        self._batcher: Batcher[PipelineOp, None] = Batcher(
            self._flush, delay=delay, max_size=1000, name="finish-batch"
        )

    def announce(self, channel: str, message: str) -> None:
        """Publish ``message`` on ``channel`` with the next batch (joined by commas)."""
        self._announcements.setdefault(channel, []).append(message)

    def add(self, op: PipelineOp) -> None:
        """Send ``op``'s commands with the next batch, without waiting for it."""
        self._extra.append(op)

    async def submit(self, op: PipelineOp) -> None:
        """Add ``op``'s commands to the next batch and wait until it has been executed."""
        await self._batcher.submit(op)

    async def _flush(self, ops: Sequence[PipelineOp]) -> list[None]:
        announcements, self._announcements = self._announcements, {}
        extra, self._extra = self._extra, []
        async with self._worker.pool.pipeline(transaction=True) as pipe:
            for op in (*extra, *ops):
                op(pipe)
            for channel, messages in announcements.items():
                pipe.publish(channel, ",".join(messages))
            await pipe.execute()
        return [None] * len(ops)

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


async def finish_with_job(ctx: dict[str, Any], op: PipelineOp) -> None:
    """Redis bookkeeping of a job that succeeded: sent with the batch that finishes the job
    under :class:`BatchWorker`, in a pipeline of its own at once under arq's stock worker."""
    batch: FinishBatch | None = ctx.get(FINISH_BATCH)
    if batch is not None:
        batch.add(op)
        return
    async with ctx["redis"].pipeline(transaction=True) as pipe:
        op(pipe)
        await pipe.execute()


