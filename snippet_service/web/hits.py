"""Creation counters per client in Redis, for the rate limits: snippets and bytes a minute,
bytes a day. Every web process shares them, and the hits of one tick are counted by one
script call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from snippet_service.batching import Batcher

KEY_PREFIX = "snippets:ratelimit:"
BYTES_PREFIX = KEY_PREFIX + "bytes:"
DAY_PREFIX = KEY_PREFIX + "day:"
WINDOW_SECONDS = 60.0
DAY_SECONDS = 86400.0
REDIS_TIMEOUT = 1.0

# Fixed windows per client: the first hit creates a counter with the window's lifetime,
# later hits count in it. ARGV: the two window lengths (ms), the three key prefixes
# (snippets this minute, bytes this minute, bytes today), and one JSON array with, per hit,
# the client, the request's bytes and the three limits (0 = off): one argument for the
# whole batch, since packing arguments is what costs the client. The snippet count always
# goes up (every attempt counts); the bytes are added only to a request that is let
# through, and a request is refused when its bytes would take a window that already holds
# some past its limit. Returns, per hit: the verdict (0 let through, 1 snippets, 2 bytes a
# minute, 3 bytes a day), the snippet count and the milliseconds until the refusing (or the
# snippet) window ends.
HIT_SCRIPT = """
local window, day = ARGV[1], ARGV[2]
local out = {}
for _, hit in ipairs(cjson.decode(ARGV[6])) do
    local client, n, per_minute = hit[1], hit[2], hit[3]
    local counter = ARGV[3] .. client
    local budgets = {
        {ARGV[4] .. client, hit[4], window, 2},
        {ARGV[5] .. client, hit[5], day, 3},
    }
    local verdict, count, wait = 0, 0, 0
    if per_minute > 0 then
        count = redis.call('INCR', counter)
        wait = redis.call('PTTL', counter)
        if wait < 0 then
            redis.call('PEXPIRE', counter, window)
            wait = tonumber(window)
        end
        if count > per_minute then
            verdict = 1
        end
    end
    for _, budget in ipairs(budgets) do
        if verdict == 0 and budget[2] > 0 then
            local spent = tonumber(redis.call('GET', budget[1]) or '0')
            if spent > 0 and spent + n > budget[2] then
                verdict = budget[4]
                wait = redis.call('PTTL', budget[1])
                if wait < 0 then
                    wait = tonumber(budget[3])
                end
            end
        end
    end
    if verdict == 0 then
        for _, budget in ipairs(budgets) do
            if budget[2] > 0 then
                redis.call('INCRBY', budget[1], n)
                if redis.call('PTTL', budget[1]) < 0 then
                    redis.call('PEXPIRE', budget[1], budget[3])
                end
            end
        end
    end
    out[#out + 1] = verdict
    out[#out + 1] = count
    out[#out + 1] = wait
end
return out
"""


class Refusal(IntEnum):
    """Which limit refused a request (NONE: it may go on)."""

    NONE = 0
    SNIPPETS_PER_MINUTE = 1
    BYTES_PER_MINUTE = 2
    BYTES_PER_DAY = 3


@dataclass(frozen=True)
class Hit:
    """One creation request: who sent it, its body's size and the limits (0 = off)."""

    client: str
    size: int
    per_minute: int
    bytes_per_minute: int
    bytes_per_day: int


@dataclass(frozen=True)
class Verdict:
    """The outcome of one hit: the refusing limit, the client's snippet count this minute,
    and the seconds until the refusing window (or the snippet window) ends."""

    refusal: Refusal
    count: int
    seconds_left: float


async def count_hits(script: AsyncScript, batch: Sequence[Hit], window: float = WINDOW_SECONDS,
                     day: float = DAY_SECONDS) -> list[Verdict]:
    """Count every hit of a batch in one round trip; a verdict per hit, in order."""
    hits = json.dumps([[hit.client, hit.size, hit.per_minute, hit.bytes_per_minute,
                        hit.bytes_per_day] for hit in batch], separators=(",", ":"))
    async with asyncio.timeout(REDIS_TIMEOUT):
        flat = await script(args=[
            int(window * 1000), int(day * 1000), KEY_PREFIX, BYTES_PREFIX, DAY_PREFIX, hits,
        ])
    return [Verdict(Refusal(int(flat[i])), int(flat[i + 1]), int(flat[i + 2]) / 1000)
            for i in range(0, len(flat), 3)]


class HitCounter:
    """Counts the creations of every request in one tick with one script call."""

    def __init__(self, redis: Redis) -> None:
        self._script = redis.register_script(HIT_SCRIPT)  # then sent by its SHA
        self._batcher: Batcher[Hit, Verdict] = Batcher(self._flush, name="ratelimit")

    async def hit(self, hit: Hit) -> Verdict:
        """Count one creation request against its client's limits."""
        return await self._batcher.submit(hit)

    async def _flush(self, batch: Sequence[Hit]) -> list[Verdict]:
        return await count_hits(self._script, batch)
