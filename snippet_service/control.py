"""Operator control of the queue, kept in Redis so every worker on every host obeys it:
paused queues, and the highlighter's circuit breaker.

- **Pause**: ``PAUSED`` maps a queue to the time it was paused. The worker's claim script
  reads it on every poll and claims nothing from a paused queue; running jobs finish, and
  deferred and retrying jobs keep their times.
- **The breaker**: ``BREAKER`` holds its state (``closed`` or ``open``), since when, why, its
  probes and an epoch that grows with every change. Workers report their highlight
  outcomes (:func:`report`); after ``BREAKER_FAILURES`` consecutive transient failures, or
  an error rate of ``BREAKER_ERROR_RATE`` over ``BREAKER_WINDOW`` seconds, it opens, and
  the claim script stops handing out highlight jobs. While open, one worker at a time
  probes the highlighter (:func:`probe_due`, :func:`record_probe`) with backoff, and a
  probe that succeeds closes it (:func:`close_breaker`). Every change is kept in a short
  history and announced on the done channel (as ``control``), so the web processes update
  what they show.
- **Outage deaths**: highlight jobs that went dead with a transient failure are noted
  (:func:`note_transient_death`); when the breaker closes, those that died during the
  outage, or shortly before it opened, are re-queued once (:func:`take_outage_deaths`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from snippet_service import breaker_scripts as scripts
from snippet_service.queue import DONE_CHANNEL

PAUSED = "snippets:paused"  # hash: queue -> paused-at (epoch seconds)
PAUSED_BY = "snippets:paused:by"  # hash: queue -> who paused it
BREAKER = "snippets:breaker"  # hash: state, since, reason, probes, epoch, ...
BREAKER_COUNTS = "snippets:breaker:window"  # hash: "<second>" calls, "<second>f" failures
BREAKER_HISTORY = "snippets:breaker:history"  # list of JSON events, newest first
OUTAGE_DEAD = "snippets:breaker:dead"  # zset: highlight job id -> died-at (transient)

# The job ids the breaker holds back while open: the highlight jobs.
BREAKER_HOLDS = "highlight:"
# The message on the done channel that says pause or breaker state changed.
CONTROL_NOTICE = "control"
CLOSED, OPEN = "closed", "open"
HISTORY_MAX = 500
OUTAGE_DEAD_MAX_AGE = 24 * 3600.0
FIRST_PROBE_SECONDS = 1.0
LOOKBACK_SECONDS = 60.0


def outage_lookback(breaker_window: float) -> float:
    """How long before the breaker opened a transient death still counts as the outage's:
    a minute, or the error-rate window if longer."""
    return max(LOOKBACK_SECONDS, breaker_window)

@dataclass
class Breaker:
    """The breaker as Redis holds it."""

    state: str = CLOSED
    since: float | None = None
    reason: str = ""
    probes: int = 0
    epoch: int = 0
    consecutive: int = 0
    next_probe_at: float | None = None
    last_probe_at: float | None = None
    last_probe_error: str = ""

    @property
    def open(self) -> bool:
        return self.state == OPEN

    def as_dict(self) -> dict[str, Any]:
        """For /healthz and the admin command line."""
        return {"state": self.state, "since": self.since, "reason": self.reason,
                "probes": self.probes, "next_probe_at": self.next_probe_at}


@dataclass
class BreakerEvent:
    """One entry of the breaker's history: ``opened``, ``closed``, a failed ``probe`` or a
    ``requeued`` note (dead jobs re-queued after an outage)."""

    kind: str
    at: float
    reason: str = ""
    by: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _float(raw: bytes | str | None) -> float | None:
    if raw is None or raw in (b"", ""):
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _text(raw: bytes | str | None) -> str:
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def parse_breaker(raw: dict[Any, Any]) -> Breaker:
    """A breaker from its Redis hash (as HGETALL answers)."""
    values = {_text(key): value for key, value in raw.items()}
    return Breaker(
        state=OPEN if _text(values.get("state")) == OPEN else CLOSED,
        since=_float(values.get("since")),
        reason=_text(values.get("reason")),
        probes=int(_float(values.get("probes")) or 0),
        epoch=int(_float(values.get("epoch")) or 0),
        consecutive=int(_float(values.get("consecutive")) or 0),
        next_probe_at=_float(values.get("next_probe_at")),
        last_probe_at=_float(values.get("last_probe_at")),
        last_probe_error=_text(values.get("last_probe_error")),
    )


# Pause and resume.

async def pause(redis: Redis, queue: str, by: str = "") -> bool:
    """Stop workers claiming ``queue``'s jobs (within a poll); False if it was paused."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hsetnx(PAUSED, queue, repr(time.time()))
        pipe.hset(PAUSED_BY, queue, by)
        pipe.publish(DONE_CHANNEL, CONTROL_NOTICE)
        added, _, _ = await pipe.execute()
    return bool(added)


async def resume(redis: Redis, queue: str) -> bool:
    """Let workers claim ``queue``'s jobs again; False if it was not paused."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hdel(PAUSED, queue)
        pipe.hdel(PAUSED_BY, queue)
        pipe.publish(DONE_CHANNEL, CONTROL_NOTICE)
        removed, _, _ = await pipe.execute()
    return bool(removed)


async def paused(redis: Redis) -> dict[str, float]:
    """Every paused queue and when it was paused."""
    raw = await redis.hgetall(PAUSED)  # type: ignore[misc]
    return {_text(queue): _float(since) or 0.0 for queue, since in raw.items()}


async def paused_by(redis: Redis) -> dict[str, str]:
    """Who paused each paused queue (as the dashboard or the command line said)."""
    raw = await redis.hgetall(PAUSED_BY)  # type: ignore[misc]
    return {_text(queue): _text(who) for queue, who in raw.items()}


# The breaker.

async def breaker_state(redis: Redis) -> Breaker:
    """The breaker now (closed when it never opened)."""
    return parse_breaker(await redis.hgetall(BREAKER))  # type: ignore[misc]


async def breaker_history(redis: Redis, limit: int = 100) -> list[BreakerEvent]:
    """The newest ``limit`` events of the breaker, newest first."""
    raws = await redis.lrange(BREAKER_HISTORY, 0, max(limit, 1) - 1)  # type: ignore[misc]
    events = []
    for raw in raws:
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        events.append(BreakerEvent(
            kind=str(data.pop("kind", "")), at=float(data.pop("at", 0)),
            reason=str(data.pop("reason", "")), by=str(data.pop("by", "")), extra=data))
    return events


def _keys() -> list[str]:
    return [BREAKER, BREAKER_COUNTS, BREAKER_HISTORY]


async def open_breaker(redis: Redis, reason: str, by: str = "") -> bool:
    """Open the breaker by hand (the dashboard); False if it was open already."""
    opened = await redis.eval(  # type: ignore[misc]
        scripts.OPEN, 3, *_keys(), repr(time.time()), reason, by, str(FIRST_PROBE_SECONDS),
        DONE_CHANNEL, str(HISTORY_MAX))
    return bool(opened)


async def close_breaker(redis: Redis, reason: str, by: str = "") -> float | None:
    """Close the breaker; the time it had opened at, or None if it was not open (so one
    caller alone acts on a close)."""
    opened_at = await redis.eval(  # type: ignore[misc]
        scripts.CLOSE, 3, *_keys(), repr(time.time()), reason, by, DONE_CHANNEL, str(HISTORY_MAX))
    return _float(opened_at) if opened_at else None


@dataclass(frozen=True)
class Rules:
    """When the breaker opens: ``failures`` consecutive transient failures, or at least
    ``error_rate`` of at least ``min_calls`` calls over ``window`` seconds (0: rule off)."""

    failures: int
    error_rate: float
    window: float
    min_calls: int


@dataclass(frozen=True)
class Seen:
    """The breaker as a worker last learned it: open or not, its epoch, the next probe."""

    open: bool
    epoch: int
    next_probe_at: float


async def report(redis: Redis, rules: Rules, successes: int, failures: int, trailing: int,
                 last_error: str = "") -> Seen:
    """Add one worker's highlight outcomes (``trailing``: its failures since its last
    success, all of them if none succeeded); open the breaker when a rule says so. Returns
    the breaker as it now is."""
    result = await redis.eval(  # type: ignore[misc]
        scripts.REPORT, 3, *_keys(), repr(time.time()), str(successes), str(failures),
        str(trailing), str(rules.failures), repr(rules.error_rate), str(int(rules.window)),
        str(rules.min_calls), last_error[:300], str(FIRST_PROBE_SECONDS), DONE_CHANNEL,
        str(HISTORY_MAX))
    return Seen(bool(int(result[0])), int(result[1]), int(result[2]) / 1000)


async def probe_due(redis: Redis, probe_seconds: float) -> int:
    """The number of the probe this caller is to make now (0: none is due, or another
    worker makes it); the next is held off for ``probe_seconds``."""
    granted = await redis.eval(  # type: ignore[misc]
        scripts.PROBE_DUE, 1, BREAKER, repr(time.time()), repr(probe_seconds))
    return int(granted)


async def record_probe_failure(redis: Redis, number: int, error: str,
                               next_in: float) -> None:
    """A probe failed: the next one in ``next_in`` seconds."""
    await redis.eval(  # type: ignore[misc]
        scripts.PROBE_FAILED, 3, *_keys(), repr(time.time()), error[:300], repr(next_in),
        str(number), str(HISTORY_MAX))


async def note(redis: Redis, kind: str, reason: str, **extra: Any) -> None:
    """Add an event of another kind to the breaker's history."""
    event = {"kind": kind, "at": time.time(), "reason": reason, **extra}
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lpush(BREAKER_HISTORY, json.dumps(event))
        pipe.ltrim(BREAKER_HISTORY, 0, HISTORY_MAX - 1)
        await pipe.execute()


# Jobs that went dead with a transient failure, re-queued once after an outage.

async def note_transient_death(redis: Redis, job_id: str, at: float) -> None:
    """A highlight job went dead with a transient failure at ``at``."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zadd(OUTAGE_DEAD, {job_id: at})
        pipe.zremrangebyscore(OUTAGE_DEAD, "-inf", f"({at - OUTAGE_DEAD_MAX_AGE}")
        await pipe.execute()


async def take_outage_deaths(redis: Redis, since: float, until: float) -> list[str]:
    """The jobs noted dead between ``since`` and ``until``, each handed out once."""
    ids = await redis.zrangebyscore(OUTAGE_DEAD, since, until)
    taken = []
    for raw in ids:
        if await redis.zrem(OUTAGE_DEAD, raw):  # another caller cannot take it too
            taken.append(_text(raw))
    return taken


@dataclass
class ControlState:
    """Paused queues and the breaker as one web process last read them (refreshed when the
    done channel says ``control``, and whenever it resubscribes)."""

    paused: dict[str, float] = field(default_factory=dict)
    breaker: Breaker = field(default_factory=Breaker)

    async def refresh(self, redis: Redis) -> None:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(PAUSED)
            pipe.hgetall(BREAKER)
            paused_raw, breaker_raw = await pipe.execute()
        self.paused = {_text(queue): _float(since) or 0.0
                       for queue, since in paused_raw.items()}
        self.breaker = parse_breaker(breaker_raw)

    @property
    def delayed(self) -> bool:
        """Whether highlighting is held back: the breaker is open."""
        return self.breaker.open
