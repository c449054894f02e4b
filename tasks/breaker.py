"""The circuit breaker's worker side: count highlight outcomes, report them, probe.

Each worker counts its own highlight outcomes in memory (:class:`BreakerWatch`: no Redis
round trip on a job's path) and reports them every FLUSH_SECONDS, or at once when it sees
BREAKER_FAILURES transient failures in a row itself; the report (:func:`control.report`)
opens the breaker in Redis when a rule says so. The claim script hands every worker the
breaker's state with each poll (:meth:`BreakerWatch.observe`), so all of them stop
claiming highlight jobs within a poll, and their transient failures from then on are held
(re-queued without using up a retry; see tasks/policy.py).

While it is open, one worker at a time probes the highlighter's ``GET /languages`` with
backoff (1 s, then doubling to PROBE_MAX_SECONDS); the probe that gets a 200 closes it, and
that worker re-queues, once, the highlight jobs that went dead with a transient failure
during the outage or shortly before it opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from snippet_service import control, jobops
from snippet_service.config import Config

logger = logging.getLogger("tasks.breaker")

BREAKER_CTX = "breaker"  # ctx key of the worker's BreakerWatch
FLUSH_SECONDS = 0.25
REFRESH_SECONDS = 1.0  # read the state when no claim brought it for this long
PROBE_SECONDS = 5.0  # a probe's time limit
PROBE_MAX_SECONDS = 30.0
HOLD_SECONDS = 1.0  # a held job is due again this soon (claimed once the breaker closes)
REDIS_ERRORS = (RedisError, ConnectionError, TimeoutError)


def probe_delay(number: int) -> float:
    """Seconds before the probe after failed probe ``number``: 2, 4, 8, … up to 30."""
    return min(PROBE_MAX_SECONDS, 2.0 ** min(number, 10))


async def probe_highlighter(session: aiohttp.ClientSession, url: str) -> str | None:
    """GET the highlighter's ``/languages``: None when it answers 200, else what failed."""
    try:
        async with session.get(url + "languages", allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=PROBE_SECONDS)) as response:
            await response.read()
            return None if response.status == 200 else f"answered {response.status}"
    except (TimeoutError, aiohttp.ClientError) as exc:
        return f"unreachable: {type(exc).__name__}: {exc}"[:300]


class BreakerWatch:
    """One worker's view of the breaker and its highlight outcomes not yet reported."""

    def __init__(self, config: Config) -> None:
        self.rules = control.Rules(config.breaker_failures, config.breaker_error_rate,
                                   config.breaker_window, config.breaker_min_calls)
        self.enabled = config.breaker_failures > 0 or config.breaker_error_rate > 0
        self.lookback = control.outage_lookback(config.breaker_window)
        self.open = False  # as Redis had it at the last claim or report
        self.epoch = 0
        self.next_probe_at = 0.0
        self.tripped = False  # this worker saw the failures that open it; not reported yet
        self._seen_at = 0.0
        self._successes = self._failures = self._trailing = self._streak = 0
        self._last_error = ""
        self._wake = asyncio.Event()

    @property
    def holding(self) -> bool:
        """Whether highlight failures are held now (the breaker is open, or opening)."""
        return self.open or self.tripped

    def succeeded(self) -> None:
        """A highlight job got its answer (HTML, or a refusal: the highlighter is up)."""
        if self.enabled and not self.holding:
            self._successes += 1
            self._trailing = self._streak = 0

    def failed(self, error: str) -> bool:
        """A transient highlight failure; True when the job is to be held: the breaker is
        open, or this failure opens it."""
        if self.holding:
            return True
        if not self.enabled:
            return False
        self._failures += 1
        self._trailing += 1
        self._streak += 1
        self._last_error = error
        if self.rules.failures and self._streak >= self.rules.failures:
            self.tripped = True
            self._wake.set()  # report at once
            return True
        return False

    def observe(self, is_open: bool, epoch: int, next_probe_at: float) -> None:
        """The breaker as Redis has it. An older epoch than one seen is a late answer and
        is ignored, unless it says closed: Redis lost its data (restarted empty, or from
        an older snapshot), and Redis is the authority on the breaker."""
        self._seen_at = time.monotonic()
        if epoch < self.epoch and is_open:
            return
        if self.open and not is_open:  # closed: start counting afresh
            self._successes = self._failures = self._trailing = self._streak = 0
        self.open, self.epoch, self.next_probe_at = is_open, epoch, next_probe_at

    async def flush(self, redis: Any) -> None:
        """Report the outcomes counted since the last report (and a trip)."""
        if not (self._successes or self._failures or self.tripped):
            return
        counts = self._successes, self._failures, self._trailing
        self._successes = self._failures = self._trailing = 0
        try:
            seen = await control.report(redis, self.rules, *counts, self._last_error)
        except BaseException:  # not reported: counted again with the next report
            self._successes += counts[0]
            self._failures += counts[1]
            self._trailing += counts[2]
            raise
        self.tripped = False
        self.observe(seen.open, seen.epoch, seen.next_probe_at)
        if seen.open:
            self._successes = self._failures = self._trailing = self._streak = 0

    async def refresh(self, redis: Any) -> None:
        state = await control.breaker_state(redis)
        self.observe(state.open, state.epoch, state.next_probe_at or 0.0)

    async def probe(self, ctx: dict[str, Any]) -> None:
        """Probe the highlighter if this worker's turn has come; close on a 200."""
        redis = ctx["redis"]
        number = await control.probe_due(redis, PROBE_SECONDS + 1)
        if not number:
            return
        config: Config = ctx["config"]
        error = await probe_highlighter(ctx["http"], config.highlighter_url)
        if error is not None:
            delay = probe_delay(number)
            logger.info("breaker probe %d failed (%s); next in %.0fs", number, error, delay)
            await control.record_probe_failure(redis, number, error, delay)
            return
        opened_at = await control.close_breaker(
            redis, f"probe {number}: GET /languages answered 200", by=config.host_name)
        if opened_at is None:
            return
        logger.warning("the highlighter answers again: breaker closed after %.1fs and %d "
                       "probes", time.time() - opened_at, number)
        await self.requeue_outage_deaths(ctx, opened_at)
        await self.refresh(redis)

    async def requeue_outage_deaths(self, ctx: dict[str, Any], opened_at: float) -> int:
        """Re-queue, once, the highlight jobs that went dead with a transient failure
        during the outage or up to ``lookback`` seconds before it opened."""
        count = await jobops.requeue_outage_deaths(ctx["redis"], ctx["db"], opened_at,
                                                   self.lookback)
        if count:
            logger.warning("re-queued %d highlight jobs that went dead during the outage",
                           count)
        return count

    async def run(self, ctx: dict[str, Any]) -> None:
        """Report, refresh and probe until cancelled (a failed round is logged)."""
        redis = ctx["redis"]
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FLUSH_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush(redis)
                if time.monotonic() - self._seen_at > REFRESH_SECONDS:
                    await self.refresh(redis)
                if self.open and time.time() >= self.next_probe_at:
                    await self.probe(ctx)
            except REDIS_ERRORS as exc:
                logger.debug("breaker round skipped: %r", exc)
            except Exception:  # a bad round must not end the loop for good
                logger.exception("breaker round failed")
