"""Wraps job functions with a retry policy, the equivalent of ``sidekiq_options retry:``.

The job decides what is transient (:class:`tasks.retry.RetryPolicy`): its ``retry_on``
failures and its own timeout retry on Sidekiq's schedule until the retries run out; any
other failure is final at once. A dead job is recorded in the dead set and its ``on_dead``
hook runs; a failure the job did not foresee (a bug) is logged with its traceback.
Cancellation (worker shutdown) is not a failure: arq runs the job again and no retry is
used. Log lines written while a job runs carry its job id and snippet id.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

from arq import Retry
from arq.worker import Function, func

from snippet_service import control, deadset, logs, stats
from tasks.breaker import BREAKER_CTX, HOLD_SECONDS, BreakerWatch
from tasks.finish import finish_with_job
from tasks.retry import RetryPolicy

logger = logging.getLogger("tasks.policy")

JobFunction = Callable[..., Awaitable[Any]]
DeadHook = Callable[..., Awaitable[None]]
# ctx key: what a job adds to its failure record (the highlight job: its snippet's language,
# shown with the failure groups).
FAILURE_DETAILS = "failure_details"

# arq's own try limit only guards against a job that crashes its worker every time;
# failures are counted by the policy, and cancelled runs must not use up retries.
CRASH_ALLOWANCE = 20


def job(
    function: JobFunction,
    *,
    name: str,
    policy: RetryPolicy,
    on_dead: DeadHook | None = None,
    breaker: bool = False,
) -> Function:
    """An arq Function running ``function`` under ``policy``; ``on_dead(ctx, exc, message,
    *args)`` runs once the job is dead. With ``breaker`` its outcomes feed the highlighter's
    circuit breaker, and its transient failures while the breaker is open are held (the job
    waits in the queue without using up a retry)."""

    async def run(ctx: dict[str, Any], *args: Any) -> Any:
        with logs.bound(job_id=ctx["job_id"], snippet_id=args[0] if args else None):
            deadline = asyncio.timeout(policy.timeout)
            started = time.monotonic()
            watch: BreakerWatch | None = ctx.get(BREAKER_CTX) if breaker else None
            try:
                async with deadline:
                    result = await function(ctx, *args)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                elapsed, outcome = time.monotonic() - started, stats.RETRY
                try:
                    dead = await _failed(ctx, name, policy, on_dead, args, exc,
                                         deadline.expired(), watch)
                    outcome = stats.DEAD
                    return dead
                finally:  # a Retry raised by _failed leaves the outcome "retry"
                    ctx["stats"].count(name, elapsed, outcome)
            ctx["stats"].count(name, time.monotonic() - started, stats.SUCCESS)
            if watch is not None:
                watch.succeeded()  # in memory; reported with the others every few 100 ms
            if int(ctx.get("job_try", 1)) > 1:  # drop its retry record with its finish
                await finish_with_job(ctx, deadset.forget_commands(ctx["job_id"]))
            return result

    run.__qualname__ = run.__name__ = name
    return func(
        run,
        name=name,
        max_tries=policy.retries + 1 + CRASH_ALLOWANCE,
        timeout=policy.timeout + 5,
    )


def _retry_after(exc: Exception) -> float | None:
    """The delay the failure asks for (a 429/503's Retry-After), if any."""
    value = getattr(exc, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


async def _failed(
    ctx: dict[str, Any],
    name: str,
    policy: RetryPolicy,
    on_dead: DeadHook | None,
    args: tuple[Any, ...],
    exc: Exception,
    timed_out: bool,
    watch: BreakerWatch | None = None,
) -> str:
    redis, job_id = ctx["redis"], ctx["job_id"]
    message = f"the job took longer than {policy.timeout:g}s" if timed_out else str(exc)
    if watch is not None:
        if not policy.is_transient(exc, timed_out):
            if policy.is_expected(exc):
                watch.succeeded()  # a refusal: the highlighter is up
        elif watch.failed(message):
            await _hold(ctx, name, policy, args, exc, message)
    failures = await deadset.count_failures(redis, job_id)
    record = deadset.FailedJob(
        job_id=job_id,
        function=name,
        args=list(args),
        error_class=type(exc).__name__,
        error=message,
        traceback="".join(traceback.format_exception(exc)),
        tries=failures,
        retries=policy.retries,
        failed_at=time.time(),
        queue=ctx.get("queue_name", ""),
        extra=dict(ctx.get(FAILURE_DETAILS) or {}),
    )
    transient = policy.is_transient(exc, timed_out)
    if transient and failures <= policy.retries:
        delay = policy.delay(failures - 1, ctx["config"].retry_delay_scale, _retry_after(exc))
        record.next_at = record.failed_at + delay
        await deadset.record_retry(redis, record)
        logger.warning("%s failed (%s: %s); retry %d of %d in %.2fs",
                       job_id, record.error_class, message, failures, policy.retries, delay)
        raise Retry(defer=delay) from exc
    if transient or policy.is_expected(exc):
        logger.error("%s is dead after %d tries: %s: %s", job_id, failures,
                     record.error_class, message)
    else:  # not a failure this job foresees: a bug, with its traceback for whoever fixes it
        logger.error("%s is dead at once, an unexpected %s: %s", job_id, record.error_class,
                     message, exc_info=exc)
    await deadset.record_dead(redis, record)
    if transient and watch is not None:  # re-queued once if the breaker opens and closes
        await control.note_transient_death(redis, job_id, record.failed_at)
    if on_dead is not None:
        await on_dead(ctx, exc, message, *args)
    return f"dead: {message}"


async def _hold(ctx: dict[str, Any], name: str, policy: RetryPolicy, args: tuple[Any, ...],
                exc: Exception, message: str) -> NoReturn:
    """A transient failure while the breaker is open (or that opened it): back to the queue
    without using up a retry; the claim hands it out again once the breaker closes."""
    redis, job_id = ctx["redis"], ctx["job_id"]
    tries = int(await redis.get(deadset.FAILURES_PREFIX + job_id) or 0)
    now = time.time()
    record = deadset.FailedJob(
        job_id=job_id, function=name, args=list(args), error_class=type(exc).__name__,
        error=message, traceback="".join(traceback.format_exception(exc)), tries=tries,
        retries=policy.retries, failed_at=now, next_at=now + HOLD_SECONDS,
        queue=ctx.get("queue_name", ""),
        extra={**(ctx.get(FAILURE_DETAILS) or {}), "held": "the circuit breaker is open"},
    )
    await deadset.record_retry(redis, record)
    logger.info("%s failed (%s: %s) while the breaker is open; held, no retry used",
                job_id, record.error_class, message)
    raise Retry(defer=HOLD_SECONDS) from exc
