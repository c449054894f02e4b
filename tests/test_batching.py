"""The micro-batcher behind every group commit, in-process: items submitted together are
flushed together, and no item is ever left without a flush."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from snippet_service.batching import Batcher


async def test_items_of_one_tick_share_one_flush() -> None:
    batches: list[list[int]] = []

    async def flush(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        return [item * 10 for item in items]

    batcher: Batcher[int, int] = Batcher(flush)
    assert await asyncio.gather(*(batcher.submit(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert batches == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize("concurrency", [1, 2])
async def test_a_caller_submitting_again_at_once_is_not_stranded(concurrency: int) -> None:
    """The caller of the last item resumes before its runner's task has fully ended: its
    next item must still get a flush."""

    async def flush(items: Sequence[int]) -> list[int]:
        await asyncio.sleep(0)
        return list(items)

    batcher: Batcher[int, int] = Batcher(flush, concurrency=concurrency)
    async with asyncio.timeout(2):  # in this task: each submit follows the last at once
        for n in range(50):
            assert await batcher.submit(n) == n


async def test_a_failed_flush_reaches_every_caller_of_its_batch() -> None:
    async def flush(items: Sequence[int]) -> list[int]:
        raise RuntimeError("down")

    batcher: Batcher[int, int] = Batcher(flush)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2),
                                   return_exceptions=True)
    assert [str(result) for result in results] == ["down", "down"]
