"""Failure records in Redis, shared by every process: jobs waiting to retry and dead jobs,
and the failure groups they fall into.

Dead jobs live in a sorted set (score: failed-at) with their details in a hash, capped
like Sidekiq's: 10,000 entries and 180 days.

Failure groups are kept up to date as records come and go, never by scanning. For each set
("retry" and "dead") and each fingerprint (:mod:`snippet_service.fingerprint`) there is a
sorted set of the group's job ids by failed-at and a hash with the error class, message
pattern, top frames, function and a count per language; ``snippets:groups:{where}`` lists
the groups by last seen, and ``snippets:groups:{where}:of`` names each job's group. Every
change is one script, so a group always counts exactly its set's records. The one exception
is a retried job that succeeds: its finish is plain commands (:func:`forget_commands`) that
leave its id in a "gone" set, which the next script to touch the retry groups drains.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from redis.asyncio import Redis

from snippet_service.fingerprint import fingerprint_of, message_pattern, top_frames

DEAD_SET = "snippets:dead"
DEAD_DATA = "snippets:dead:data"
RETRY_SET = "snippets:retrying"
RETRY_DATA = "snippets:retrying:data"
FAILURES_PREFIX = "snippets:failures:"
DEAD_MAX_ENTRIES = 10_000
DEAD_MAX_AGE_SECONDS = 180 * 24 * 3600
FAILURES_TTL_SECONDS = 30 * 24 * 3600
GROUPS_PREFIX = "snippets:groups:"
GROUP_PREFIX = "snippets:group:"
RETRY_GONE = "snippets:groups:retry:gone"
GROUPS_PAGE_SIZE = 25

Where = Literal["dead", "retry"]

_LUA = f"""
local DEAD_SET, DEAD_DATA = '{DEAD_SET}', '{DEAD_DATA}'
local RETRY_SET, RETRY_DATA = '{RETRY_SET}', '{RETRY_DATA}'
local FAILURES, GONE = '{FAILURES_PREFIX}', '{RETRY_GONE}'
local GROUPS, GROUP = '{GROUPS_PREFIX}', '{GROUP_PREFIX}'
""" + """
-- Take a job out of its group in `where`; drop the group once it is empty.
local function unlink(where, id)
  local of = GROUPS .. where .. ':of'
  local entry = redis.call('HGET', of, id)
  if not entry then return end
  redis.call('HDEL', of, id)
  local bar = string.find(entry, '|', 1, true)
  local fp, lang = string.sub(entry, 1, bar - 1), 'lang:' .. string.sub(entry, bar + 1)
  local members = GROUP .. where .. ':' .. fp
  if redis.call('ZREM', members, id) == 0 then return end
  if redis.call('HINCRBY', members .. ':info', lang, -1) <= 0 then
    redis.call('HDEL', members .. ':info', lang)
  end
  local newest = redis.call('ZRANGE', members, -1, -1, 'WITHSCORES')
  if #newest == 0 then
    redis.call('DEL', members, members .. ':info')
    redis.call('ZREM', GROUPS .. where, fp)
  else
    redis.call('ZADD', GROUPS .. where, newest[2], fp)
  end
end

-- Put a job in the group ARGV[first..first+7] describes:
-- fingerprint, language, failed-at, function, error class, pattern, frames.
local function link(where, id, first)
  unlink(where, id)
  local fp, lang, at = ARGV[first], ARGV[first + 1], ARGV[first + 2]
  local members = GROUP .. where .. ':' .. fp
  redis.call('ZADD', members, at, id)
  redis.call('HSET', GROUPS .. where .. ':of', id, fp .. '|' .. lang)
  redis.call('HINCRBY', members .. ':info', 'lang:' .. lang, 1)
  redis.call('HSET', members .. ':info', 'function', ARGV[first + 3],
             'error_class', ARGV[first + 4], 'pattern', ARGV[first + 5],
             'frames', ARGV[first + 6])
  local newest = redis.call('ZRANGE', members, -1, -1, 'WITHSCORES')
  redis.call('ZADD', GROUPS .. where, newest[2], fp)
end

-- Retried jobs that finished since: out of their retry groups.
local function drain()
  while true do
    local gone = redis.call('SPOP', GONE, 500)
    if #gone == 0 then return end
    for _, id in ipairs(gone) do
      if not redis.call('ZSCORE', RETRY_SET, id) then unlink('retry', id) end
    end
  end
end

local function forget(id)
  redis.call('ZREM', RETRY_SET, id)
  redis.call('HDEL', RETRY_DATA, id)
  redis.call('DEL', FAILURES .. id)
  unlink('retry', id)
end

local function remove_dead(id)
  if redis.call('ZREM', DEAD_SET, id) == 0 then return 0 end
  redis.call('HDEL', DEAD_DATA, id)
  unlink('dead', id)
  return 1
end

-- Drop dead jobs older than `cutoff` and beyond the newest `keep`.
local function trim(cutoff, keep)
  local old = redis.call('ZRANGEBYSCORE', DEAD_SET, '-inf', '(' .. cutoff)
  local excess = {}
  local size = redis.call('ZCARD', DEAD_SET) - #old
  if size > keep then
    excess = redis.call('ZRANGE', DEAD_SET, #old, #old + size - keep - 1)
  end
  for _, list in ipairs({old, excess}) do
    for _, id in ipairs(list) do remove_dead(id) end
  end
  return #old + #excess
end
"""

# ARGV: job id, next-at, record, then the group (see link).
_RECORD_RETRY = _LUA + """
drain()
redis.call('ZADD', RETRY_SET, ARGV[2], ARGV[1])
redis.call('HSET', RETRY_DATA, ARGV[1], ARGV[3])
link('retry', ARGV[1], 4)
"""
# ARGV: job id, failed-at, record, cutoff, keep, then the group.
_RECORD_DEAD = _LUA + """
drain()
forget(ARGV[1])
redis.call('ZADD', DEAD_SET, ARGV[2], ARGV[1])
redis.call('HSET', DEAD_DATA, ARGV[1], ARGV[3])
link('dead', ARGV[1], 6)
return trim(ARGV[4], tonumber(ARGV[5]))
"""
_FORGET = _LUA + "drain() for _, id in ipairs(ARGV) do forget(id) end"
_REMOVE_DEAD = _LUA + """
local removed = 0
for _, id in ipairs(ARGV) do removed = removed + remove_dead(id) end
return removed
"""
_TRIM = _LUA + "return trim(ARGV[1], tonumber(ARGV[2]))"
_DRAIN = _LUA + "drain()"
_CLEAR_DEAD = _LUA + """
local count = redis.call('ZCARD', DEAD_SET)
local fps = redis.call('ZRANGE', GROUPS .. 'dead', 0, -1)
for _, fp in ipairs(fps) do
  redis.call('DEL', GROUP .. 'dead:' .. fp, GROUP .. 'dead:' .. fp .. ':info')
end
redis.call('DEL', DEAD_SET, DEAD_DATA, GROUPS .. 'dead', GROUPS .. 'dead:of')
return count
"""


@dataclass
class FailedJob:
    """One failure of a job, as the dashboard shows it (``extra["language"]``: the
    snippet's language, when the job knew it)."""

    job_id: str
    function: str
    args: list[Any]
    error_class: str
    error: str
    traceback: str
    tries: int
    retries: int
    failed_at: float
    next_at: float | None = None
    queue: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: bytes | str) -> FailedJob:
        return cls(**json.loads(raw))

    @property
    def language(self) -> str:
        return str(self.extra.get("language") or "")


@dataclass
class Group:
    """Failures of one kind: the jobs of one set whose failures share a fingerprint."""

    fingerprint: str
    count: int
    first_seen: float
    last_seen: float
    function: str
    error_class: str
    pattern: str
    frames: list[str]
    languages: dict[str, int]  # most affected first; "" for jobs that did not say


def fingerprint(record: FailedJob) -> str:
    """The failure's group: its function, error class, message pattern and top frames."""
    return fingerprint_of(record.function, record.error_class, record.error, record.traceback)


def _group_args(record: FailedJob) -> list[str | float]:
    return [fingerprint(record), record.language, record.failed_at, record.function,
            record.error_class, message_pattern(record.error),
            "\n".join(top_frames(record.traceback))]


async def _run(redis: Redis, script: str, args: list[Any]) -> Any:
    return await redis.register_script(script)(args=args)


async def count_failures(redis: Redis, job_id: str) -> int:
    """Add one to the job's failure count and return it."""
    key = FAILURES_PREFIX + job_id
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, FAILURES_TTL_SECONDS)
        count, _ = await pipe.execute()
    return int(count)


async def record_retry(redis: Redis, job: FailedJob) -> None:
    """Show a job as waiting to retry at ``job.next_at``, in its failure group."""
    await _run(redis, _RECORD_RETRY, [job.job_id, job.next_at or job.failed_at, job.dumps(),
                                      *_group_args(job)])


def forget_commands(job_id: str) -> list[list[str]]:
    """The Redis commands of :func:`forget_job`, as data (its group is left to the next
    script that touches the retry groups)."""
    return [["ZREM", RETRY_SET, job_id], ["HDEL", RETRY_DATA, job_id],
            ["DEL", FAILURES_PREFIX + job_id], ["SADD", RETRY_GONE, job_id]]


async def forget_job(redis: Redis, job_id: str) -> None:
    """The job finished: drop its retry record, its group membership and failure count."""
    await _run(redis, _FORGET, [job_id])


async def record_dead(redis: Redis, job: FailedJob) -> None:
    """Move a job to the dead set (and group) and trim the set to its caps."""
    await _run(redis, _RECORD_DEAD, [job.job_id, job.failed_at, job.dumps(),
                                     time.time() - DEAD_MAX_AGE_SECONDS, DEAD_MAX_ENTRIES,
                                     *_group_args(job)])


async def trim_dead(
    redis: Redis, max_entries: int = DEAD_MAX_ENTRIES, max_age: float = DEAD_MAX_AGE_SECONDS
) -> int:
    """Drop dead jobs past the caps (older than ``max_age`` seconds, beyond the newest
    ``max_entries``); return how many went."""
    return int(await _run(redis, _TRIM, [time.time() - max_age, max_entries]))


async def dead_count(redis: Redis) -> int:
    return int(await redis.zcard(DEAD_SET))


async def dead_jobs(redis: Redis, offset: int = 0, limit: int = 25) -> list[FailedJob]:
    """A page of dead jobs, newest first."""
    ids = await redis.zrevrange(DEAD_SET, offset, offset + limit - 1)
    return await _load(redis, DEAD_DATA, ids)


async def get_dead(redis: Redis, job_id: str) -> FailedJob | None:
    raw = await redis.hget(DEAD_DATA, job_id)  # type: ignore[misc]
    return FailedJob.loads(raw) if raw else None


async def get_retrying(redis: Redis, job_id: str) -> FailedJob | None:
    raw = await redis.hget(RETRY_DATA, job_id)  # type: ignore[misc]
    return FailedJob.loads(raw) if raw else None


async def remove_dead(redis: Redis, job_id: str) -> bool:
    """Delete one dead job; False if it was not there."""
    return await remove_dead_many(redis, [job_id]) == 1


async def remove_dead_many(redis: Redis, job_ids: list[str]) -> int:
    """Delete these dead jobs; return how many were there."""
    removed = 0
    for start in range(0, len(job_ids), 1000):
        removed += int(await _run(redis, _REMOVE_DEAD, job_ids[start:start + 1000]))
    return removed


async def clear_dead(redis: Redis) -> int:
    """Empty the dead set and its groups; return how many jobs went."""
    return int(await _run(redis, _CLEAR_DEAD, []))


async def retrying_jobs(redis: Redis, offset: int = 0, limit: int = 25) -> list[FailedJob]:
    """A page of jobs waiting to retry, soonest first."""
    ids = await redis.zrange(RETRY_SET, offset, offset + limit - 1)
    return await _load(redis, RETRY_DATA, ids)


async def _load(redis: Redis, data_key: str, ids: list[bytes] | list[str]) -> list[FailedJob]:
    if not ids:
        return []
    raws = await redis.hmget(data_key, ids)  # type: ignore[misc]
    return [FailedJob.loads(raw) for raw in raws if raw]


async def group_count(redis: Redis, where: Where) -> int:
    """How many failure groups the set has."""
    if where == "retry":
        await _run(redis, _DRAIN, [])
    return int(await redis.zcard(GROUPS_PREFIX + where))


async def groups(redis: Redis, where: Where, page: int = 1,
                 size: int = GROUPS_PAGE_SIZE) -> list[Group]:
    """A page of the set's failure groups, most recently seen first."""
    if where == "retry":
        await _run(redis, _DRAIN, [])
    start = (max(1, page) - 1) * size
    scored = await redis.zrevrange(GROUPS_PREFIX + where, start, start + size - 1,
                                   withscores=True)
    return await _groups(redis, where, [(fp.decode(), last) for fp, last in scored])


async def get_group(redis: Redis, where: Where, fingerprint: str) -> Group | None:
    """One failure group, or None if it has no jobs."""
    if where == "retry":
        await _run(redis, _DRAIN, [])
    last = await redis.zscore(GROUPS_PREFIX + where, fingerprint)
    found = await _groups(redis, where, [(fingerprint, last)]) if last is not None else []
    return found[0] if found else None


async def _groups(redis: Redis, where: Where, scored: list[tuple[str, float]]) -> list[Group]:
    async with redis.pipeline(transaction=False) as pipe:
        for fp, _ in scored:
            members = f"{GROUP_PREFIX}{where}:{fp}"
            pipe.zcard(members)
            pipe.zrange(members, 0, 0, withscores=True)
            pipe.hgetall(members + ":info")
        replies = await pipe.execute()
    found = []
    for index, (fp, last) in enumerate(scored):
        count, first, info = replies[3 * index:3 * index + 3]
        if not count:
            continue
        text = {key.decode(): value.decode() for key, value in info.items()}
        languages = {key[5:]: int(value) for key, value in text.items()
                     if key.startswith("lang:")}
        found.append(Group(
            fingerprint=fp, count=int(count), first_seen=first[0][1] if first else last,
            last_seen=last, function=text.get("function", ""),
            error_class=text.get("error_class", ""), pattern=text.get("pattern", ""),
            frames=[frame for frame in text.get("frames", "").split("\n") if frame],
            languages=dict(sorted(languages.items(), key=lambda item: (-item[1], item[0]))),
        ))
    return found


async def group_members(redis: Redis, where: Where, fingerprint: str, limit: int,
                        offset: int = 0) -> list[str]:
    """Job ids of one failure group, newest first."""
    if where == "retry":
        await _run(redis, _DRAIN, [])
    ids = await redis.zrevrange(f"{GROUP_PREFIX}{where}:{fingerprint}", offset,
                                offset + limit - 1)
    return [job_id.decode() for job_id in ids]


async def group_jobs(redis: Redis, where: Where, fingerprint: str, limit: int,
                     offset: int = 0) -> list[FailedJob]:
    """The records of one failure group, newest first."""
    ids = await group_members(redis, where, fingerprint, limit, offset)
    return await _load(redis, DEAD_DATA if where == "dead" else RETRY_DATA, ids)
