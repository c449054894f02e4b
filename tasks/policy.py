"""Wraps job functions with a retry policy, the equivalent of ``sidekiq_options retry:``.

Any failure but a permanent one retries on Sidekiq's schedule until the policy's retries
run out; then, or at once for a permanent failure, the job is recorded in the dead set and
its ``on_dead`` hook runs. Cancellation (worker shutdown) is not a failure: arq runs the
job again and no retry is used.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry
from arq.worker import Function, func

from snippet_service import deadset
from tasks.client import HighlighterError
from tasks.finish import finish_with_job
from tasks.retry import RetryPolicy, is_transient

logger = logging.getLogger("tasks.policy")

JobFunction = Callable[..., Awaitable[Any]]
DeadHook = Callable[..., Awaitable[None]]

# arq's own try limit only guards against a job that crashes its worker every time;
# failures are counted by the policy, and cancelled runs must not use up retries.
CRASH_ALLOWANCE = 20


def job(
    function: JobFunction,
    *,
    name: str,
    policy: RetryPolicy,
    on_dead: DeadHook | None = None,
) -> Function:
    """An arq Function running ``function`` under ``policy``."""

    async def run(ctx: dict[str, Any], *args: Any) -> Any:
        try:
            async with asyncio.timeout(policy.timeout):
                result = await function(ctx, *args)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ctx["stats"].count(failed=True)
            return await _failed(ctx, name, policy, on_dead, args, exc)
        ctx["stats"].count(failed=False)
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


async def _failed(
    ctx: dict[str, Any],
    name: str,
    policy: RetryPolicy,
    on_dead: DeadHook | None,
    args: tuple[Any, ...],
    exc: Exception,
) -> str:
    redis, job_id = ctx["redis"], ctx["job_id"]
    failures = await deadset.count_failures(redis, job_id)
    if isinstance(exc, TimeoutError) and not str(exc):
        message = f"the job took longer than {policy.timeout:g}s"
    else:
        message = str(exc)
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
    )
    if is_transient(exc) and failures <= policy.retries:
        retry_after = exc.retry_after if isinstance(exc, HighlighterError) else None
        delay = policy.delay(failures - 1, ctx["config"].retry_delay_scale, retry_after)
        record.next_at = record.failed_at + delay
        await deadset.record_retry(redis, record)
        logger.warning("%s failed (%s: %s); retry %d of %d in %.2fs",
                       job_id, record.error_class, message, failures, policy.retries, delay)
        raise Retry(defer=delay) from exc
    logger.error("%s is dead after %d tries: %s: %s", job_id, failures, record.error_class,
                 message)
    await deadset.record_dead(redis, record)
    if on_dead is not None:
        await on_dead(ctx, exc, message, *args)
    return f"dead: {message}"
