"""Creation counters per client in Redis, for the rate limits: snippets and bytes a minute,
bytes a day. Every web process shares them, and the hits of one tick are counted by one
script call."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from redis.asyncio import Redis

from snippet_service.batching import Batcher

KEY_PREFIX = "snippets:ratelimit:"
BYTES_PREFIX = KEY_PREFIX + "bytes:"
DAY_PREFIX = KEY_PREFIX + "day:"
WINDOW_SECONDS = 60.0
DAY_SECONDS = 86400.0
REDIS_TIMEOUT = 1.0

# Fixed windows per client: the first hit creates a counter with the window's lifetime,
# later hits count in it. Per hit, three keys (snippets this minute, bytes this minute,
# bytes today) and four arguments after the two window lengths (the request's bytes and
# the three limits, 0 = off). The snippet count always goes up (every attempt counts);
# the bytes are added only to a request that is let through, and a request is refused
# when its bytes would take a window that already holds some past its limit. Returns,
# per hit: the verdict (0 let through, 1 snippets, 2 bytes a minute, 3 bytes a day),
# the snippet count and the milliseconds until the refusing (or the snippet) window ends.
HIT_SCRIPT = """
local window, day = ARGV[1], ARGV[2]
local out = {}
for h = 0, #KEYS / 3 - 1 do
    local a = 3 + 4 * h
    local n = tonumber(ARGV[a])
    local budgets = {
        {KEYS[3 * h + 2], tonumber(ARGV[a + 2]), window, 2},
        {KEYS[3 * h + 3], tonumber(ARGV[a + 3]), day, 3},
    }
    local verdict, count, wait = 0, 0, 0
    if tonumber(ARGV[a + 1]) > 0 then
        count = redis.call('INCR', KEYS[3 * h + 1])
        wait = redis.call('PTTL', KEYS[3 * h + 1])
        if wait < 0 then
            redis.call('PEXPIRE', KEYS[3 * h + 1], window)
            wait = tonumber(window)
        end
        if count > tonumber(ARGV[a + 1]) then
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


async def count_hits(redis: Redis, batch: Sequence[Hit], window: float = WINDOW_SECONDS,
                     day: float = DAY_SECONDS) -> list[Verdict]:
    """Count every hit of a batch in one round trip; a verdict per hit, in order."""
    keys: list[str] = []
    args: list[str] = [str(int(window * 1000)), str(int(day * 1000))]
    for hit in batch:
        keys += [KEY_PREFIX + hit.client, BYTES_PREFIX + hit.client, DAY_PREFIX + hit.client]
        args += [str(hit.size), str(hit.per_minute), str(hit.bytes_per_minute),
                 str(hit.bytes_per_day)]
    async with asyncio.timeout(REDIS_TIMEOUT):
        flat = await redis.eval(HIT_SCRIPT, len(keys), *keys, *args)  # type: ignore[misc]
    return [Verdict(Refusal(int(flat[i])), int(flat[i + 1]), int(flat[i + 2]) / 1000)
            for i in range(0, len(flat), 3)]


class HitCounter:
    """Counts the creations of every request in one tick with one script call."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._batcher: Batcher[Hit, Verdict] = Batcher(self._flush, name="ratelimit")

    async def hit(self, hit: Hit) -> Verdict:
        """Count one creation request against its client's limits."""
        return await self._batcher.submit(hit)

    async def _flush(self, batch: Sequence[Hit]) -> list[Verdict]:
        return await count_hits(self._redis, batch)
