"""Job counters and history in Redis, shared by every process.

- totals: processed and failed since the counters began, and per-second buckets of processed
  jobs (for "jobs per second now");
- history: processed and failed counts and a duration histogram per job function, in one
  Redis hash per period at three resolutions (a minute, 10 minutes and an hour), each kept
  for 7 days: at most 10,080 minute hashes, 1,008 ten-minute hashes and 168 hour hashes.
  A graph of 1 hour reads 60 minute hashes, of 1 day 144 ten-minute hashes, of 7 days 168
  hour hashes;
- job totals by function and outcome, with the duration histogram, for ``/metrics``;
- the finished jobs of the last ``FINISHED_JOBS_WINDOW`` seconds (written by the worker's
  finish batch, read here).

Workers count in memory (:class:`JobCounter`) and flush once a second in one pipeline, so a
job costs no Redis round trip of its own.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from dataclasses import dataclass, field

from redis.asyncio import Redis

PROCESSED = "snippets:stats:processed"
FAILED = "snippets:stats:failed"
SECOND_PREFIX = "snippets:stats:sec:"
HISTORY_PREFIX = "snippets:stats:h:"  # + resolution + ":" + period start (epoch seconds)
JOBS = "snippets:stats:jobs"  # totals per function and outcome, and durations
FINISHED = "snippets:finished"  # member "job_id|function|outcome|ms", score: finished at
RATE_WINDOW_SECONDS = 10
HISTORY_SECONDS = 7 * 24 * 3600
RESOLUTIONS = (60, 600, 3600)
# span name -> (length, resolution), in seconds
SPANS = {"1h": (3600, 60), "1d": (24 * 3600, 600), "7d": (HISTORY_SECONDS, 3600)}
# Upper bounds (seconds) of the duration buckets; one more bucket above the last.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0)
SUCCESS, RETRY, DEAD = "success", "retry", "dead"

# Fields of a period hash and of JOBS: "p" processed, "f" failed, "n:<function>:<outcome>"
# runs, "b:<function>:<bucket>" runs by duration, "s:<function>" total milliseconds.


class JobCounter:
    """A worker process's counts since its last flush to Redis (a per-process resource in
    the worker's ctx, like its connection pools): counting costs no round trip per job."""

    def __init__(self) -> None:
        self._per_second: dict[int, int] = {}
        self._minutes: dict[int, Counter[str]] = {}
        self._failed = 0

    def count(self, function: str, seconds: float, outcome: str) -> None:
        """One run of ``function`` ended after ``seconds`` with ``outcome`` (success, retry
        or dead; a failed run counts as processed too, as in Sidekiq)."""
        second = int(time.time())
        self._per_second[second] = self._per_second.get(second, 0) + 1
        tally = self._minutes.get(second // 60)
        if tally is None:
            tally = self._minutes[second // 60] = Counter()
        tally["p"] += 1
        if outcome != SUCCESS:
            self._failed += 1
            tally["f"] += 1
        tally[f"n:{function}:{outcome}"] += 1
        tally[f"b:{function}:{bisect.bisect_left(DURATION_BUCKETS, seconds)}"] += 1
        tally[f"s:{function}"] += round(seconds * 1000)

    async def flush(self, redis: Redis) -> None:
        """Add the counts to Redis in one round trip (kept for a retry if that fails)."""
        if not self._per_second:
            return
        per_second, minutes, failed = self._per_second, self._minutes, self._failed
        self._per_second, self._minutes, self._failed = {}, {}, 0
        periods: dict[tuple[int, int], Counter[str]] = {}
        totals: Counter[str] = Counter()
        for minute, tally in minutes.items():
            for resolution in RESOLUTIONS:
                start = minute * 60 // resolution * resolution
                periods.setdefault((resolution, start), Counter()).update(tally)
            totals.update(tally)
        del totals["p"], totals["f"]
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.incrby(PROCESSED, sum(per_second.values()))
                if failed:
                    pipe.incrby(FAILED, failed)
                for second, count in per_second.items():
                    pipe.incrby(SECOND_PREFIX + str(second), count)
                    pipe.expire(SECOND_PREFIX + str(second), 120)
                for (resolution, start), tally in periods.items():
                    key = f"{HISTORY_PREFIX}{resolution}:{start}"
                    for name, value in tally.items():
                        pipe.hincrby(key, name, value)
                    pipe.expire(key, HISTORY_SECONDS + resolution)
                for name, value in totals.items():
                    pipe.hincrby(JOBS, name, value)
                await pipe.execute()
        except BaseException:
            for second, count in per_second.items():
                self._per_second[second] = self._per_second.get(second, 0) + count
            for minute, tally in minutes.items():
                self._minutes.setdefault(minute, Counter()).update(tally)
            self._failed += failed
            raise


async def totals(redis: Redis) -> tuple[int, int]:
    """(processed, failed) since the counters began."""
    processed, failed = await redis.mget([PROCESSED, FAILED])
    return int(processed or 0), int(failed or 0)


async def jobs_per_second(redis: Redis) -> float:
    """Processed jobs per second over the last few whole seconds."""
    now = int(time.time())
    keys = [SECOND_PREFIX + str(now - offset) for offset in range(1, RATE_WINDOW_SECONDS + 1)]
    return sum(int(value or 0) for value in await redis.mget(keys)) / RATE_WINDOW_SECONDS


@dataclass
class Point:
    """One bar of a history graph: the period starting at ``at`` (epoch seconds)."""

    at: float
    processed: int
    failed: int


@dataclass
class Durations:
    """The runs of one job function over a span, by outcome, with their durations."""

    function: str
    runs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total_seconds: float = 0.0

    @property
    def p50(self) -> float | None:
        return quantile(self.buckets, 0.5)

    @property
    def p95(self) -> float | None:
        return quantile(self.buckets, 0.95)

    @property
    def mean(self) -> float | None:
        runs = sum(self.buckets)
        return self.total_seconds / runs if runs else None


def quantile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile of a duration histogram (linear within its bucket, as
    Prometheus' histogram_quantile does); None without runs."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = q * total, 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(DURATION_BUCKETS):
                return DURATION_BUCKETS[-1]  # above the last bound: report that bound
            lower = DURATION_BUCKETS[index - 1] if index else 0.0
            return lower + (DURATION_BUCKETS[index] - lower) * (rank - seen) / count
        seen += count
    return DURATION_BUCKETS[-1]


def _span(span: str) -> tuple[int, int]:
    if span not in SPANS:
        raise ValueError(f"span must be one of {', '.join(SPANS)}")
    return SPANS[span]


async def _periods(redis: Redis, span: str) -> list[tuple[int, dict[bytes, bytes]]]:
    """(start, hash) of each period of ``span``, oldest first, the current one last."""
    length, resolution = _span(span)
    last = int(time.time()) // resolution * resolution
    starts = list(range(last - length + resolution, last + resolution, resolution))
    async with redis.pipeline(transaction=False) as pipe:
        for start in starts:
            pipe.hgetall(f"{HISTORY_PREFIX}{resolution}:{start}")
        hashes = await pipe.execute()
    return list(zip(starts, hashes, strict=True))


async def history(redis: Redis, span: str) -> list[Point]:
    """Processed and failed jobs per period over ``span`` ("1h": per minute, "1d": per 10
    minutes, "7d": per hour), oldest first."""
    return [Point(start, int(data.get(b"p", 0)), int(data.get(b"f", 0)))
            for start, data in await _periods(redis, span)]


def _add_fields(table: dict[str, Durations], data: dict[bytes, bytes]) -> None:
    for raw_name, raw_value in data.items():
        name, value = raw_name.decode(), int(raw_value)
        kind, _, rest = name.partition(":")
        if kind == "s":
            table.setdefault(rest, Durations(rest)).total_seconds += value / 1000
            continue
        function, _, last = rest.rpartition(":")
        if not function:
            continue
        entry = table.setdefault(function, Durations(function))
        if kind == "n":
            entry.outcomes[last] = entry.outcomes.get(last, 0) + value
            entry.runs += value
        elif kind == "b" and last.isdigit() and int(last) < len(entry.buckets):
            entry.buckets[int(last)] += value


async def duration_table(redis: Redis, span: str) -> list[Durations]:
    """Each job function's runs, outcomes and duration histogram over ``span``."""
    table: dict[str, Durations] = {}
    for _, data in await _periods(redis, span):
        _add_fields(table, data)
    return sorted(table.values(), key=lambda entry: entry.function)


async def durations(redis: Redis, function: str, span: str) -> tuple[float | None, float | None]:
    """(p50, p95) run time of ``function`` in seconds over ``span``; None without runs."""
    for entry in await duration_table(redis, span):
        if entry.function == function:
            return entry.p50, entry.p95
    return None, None


async def job_totals(redis: Redis) -> list[Durations]:
    """Each job function's runs by outcome and durations since the counters began."""
    table: dict[str, Durations] = {}
    _add_fields(table, await redis.hgetall(JOBS))  # type: ignore[misc]
    return sorted(table.values(), key=lambda entry: entry.function)


async def last_hour(redis: Redis) -> list[tuple[int, int]]:
    """(minute start epoch, processed jobs) for each of the last 60 minutes, oldest first."""
    return [(int(point.at), point.processed) for point in await history(redis, "1h")]


@dataclass
class FinishedJob:
    """A job that finished within the window (arq keeps its result for 10 minutes)."""

    job_id: str
    function: str
    outcome: str
    duration: float
    finished_at: float


def finished_member(job_id: str, function: str, outcome: str, seconds: float) -> str:
    """The FINISHED entry of one finished run."""
    return f"{job_id}|{function}|{outcome}|{max(0, round(seconds * 1000))}"


def finished_trim(now: float, window: float, max_entries: int) -> list[list[str]]:
    """Commands dropping the finished entries older than the window or beyond the newest
    ``max_entries`` (run with each finish batch)."""
    return [["ZREMRANGEBYSCORE", FINISHED, "-inf", f"({now - window:.3f}"],
            ["ZREMRANGEBYRANK", FINISHED, "0", str(-max_entries - 1)]]


async def finished(redis: Redis, window: float, offset: int,
                   limit: int) -> tuple[list[FinishedJob], int]:
    """A page of the jobs finished within the last ``window`` seconds, newest first, and
    how many there are."""
    since = f"{time.time() - window:.3f}"
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zrevrangebyscore(FINISHED, "+inf", since, start=offset, num=limit,
                              withscores=True)
        pipe.zcount(FINISHED, since, "+inf")
        rows, total = await pipe.execute()
    jobs = []
    for member, score in rows:
        parts = member.decode(errors="replace").rsplit("|", 3)
        if len(parts) != 4:
            continue
        job_id, function, outcome, ms = parts
        jobs.append(FinishedJob(job_id, function, outcome,
                                int(ms) / 1000 if ms.isdigit() else 0.0, float(score)))
    return jobs, int(total)
