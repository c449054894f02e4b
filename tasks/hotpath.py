"""arq's worker with a batched hot path: claim many jobs in one script call, finish many in
another.

arq's stock ``Worker`` starts jobs one at a time (WATCH, EXISTS, ZSCORE, MULTI/EXEC for each
id, then a second MULTI/EXEC to read the payload and count the try) and finishes each with a
MULTI/EXEC of its own. :class:`BatchWorker` keeps arq's keys, payloads and results exactly,
so ``enqueue_job``, ``Job.status()``/``result()``/``abort()``, ``arq --check``, deferred
jobs and crash recovery through the in-progress key all work unchanged. What changes is how
many round trips it takes:

- **claim**: one Lua script per poll takes up to as many ready jobs as there are free slots
  (score <= now, no in-progress key), sets their in-progress keys with arq's timeout, counts
  their try and returns their payloads, and the ids waiting to be aborted;
- **run**: the job runs as in arq (timeout, ``Retry``, cancellation, abort, max tries);
- **finish**: every job that finished within one loop tick is finished by one script call
  (``tasks.finish``), atomic like MULTI/EXEC: results, in-progress and payload deletes,
  queue removals, retry re-scores, and the done messages jobs announced (one PUBLISH per
  channel for the whole batch).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from arq.constants import (
    abort_jobs_ss,
    in_progress_key_prefix,
    job_key_prefix,
    keep_cronjob_progress,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import ms_to_datetime, timestamp_ms, to_ms
from arq.worker import JobExecutionFailed, Retry, RetryJob, Worker
from redis.exceptions import ConnectionError as RedisConnectionError

from snippet_service import control, stats
from tasks.breaker import BREAKER_CTX, BreakerWatch
from tasks.claim import CLAIM
from tasks.finish import (
    FINISH_BATCH,
    Command,
    FinishBatch,
    command,
    finished_entry,
    guarded,
    run_outcome,
    shielded,
)

logger = logging.getLogger("tasks.hotpath")

RETRY_KEY_TTL = 88400  # seconds, as arq sets it
REDIS_LOST = (RedisConnectionError, ConnectionError)
REDIS_LOST_DEFER_MS = 1000
# An abort asked for a job that no worker claims (a paused queue, an open breaker, a job
# that no longer exists) is kept this long, then dropped (arq's own trim drops none).
ABORT_KEPT_MS = 24 * 3600 * 1000


class BatchWorker(Worker):
    """arq's ``Worker`` claiming and finishing jobs in batches (see the module doc)."""

    def __init__(self, *args: Any, finish_delay: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.finish_delay = finish_delay
        self._finish_batch: FinishBatch | None = None
        self._task_error: BaseException | None = None
        self._claim_script: Any = None
        self._claim_token = uuid.uuid4().hex[:16]
        self._marks: dict[str, str] = {}  # job id -> the mark of its latest claim here
        self._sweeps: set[str] = set()  # the running cron jobs' ids
        self.paused = False  # this worker's queue, as the last claim found it
        self._backlog = False  # the last claim filled every free slot
        self._slot_freed = asyncio.Event()
        # The finished-jobs list (stats.FINISHED): FINISHED_JOBS_WINDOW, FINISHED_JOBS_MAX.
        config = self.ctx.get("config")
        self.finished_window = float(getattr(config, "finished_jobs_window", 0.0))
        self.finished_max = int(getattr(config, "finished_jobs_max", 0))

    @property
    def finish_batch(self) -> FinishBatch:
        if self._finish_batch is None:
            listing = self.finished_window > 0 and self.finished_max > 0
            self._finish_batch = FinishBatch(self, self.finish_delay,
                                             self._trim_finished if listing else None)
            self.ctx[FINISH_BATCH] = self._finish_batch
        return self._finish_batch

    async def _poll_iteration(self) -> None:
        """Claim up to the free slots, start them, cancel aborted jobs, beat.

        While the queue holds more ready jobs than there were free slots, the next claim
        follows as soon as jobs finish (within the poll delay), rather than a whole poll
        delay later: a busy worker never leaves a slot idle waiting for the clock.
        """
        loop = asyncio.get_running_loop()
        window_ends = loop.time() + self.poll_delay_s
        while True:
            if self._task_error is not None:  # a job could not be finished: Redis is gone
                error, self._task_error = self._task_error, None
                raise error
            slots = self._free_slots()
            if slots or self.allow_abort_jobs:
                claimed, aborting = await self._claim(slots)
                for job_id, score, payload, job_try, aborted in claimed:
                    self._start(job_id.decode(), int(score), payload, int(job_try),
                                bool(aborted))
                if aborting:
                    self._cancel_aborting(aborting)
                if slots:
                    self._backlog = len(claimed) == slots
            remaining = window_ends - loop.time()
            if not (self._backlog and self.allow_pick_jobs) or remaining <= 0:
                break
            self._slot_freed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._slot_freed.wait()
            except TimeoutError:
                break
        await self.heart_beat()

    def _free_slots(self) -> int:
        slots = self.max_jobs - self.job_counter if self.allow_pick_jobs else 0
        if self.burst and self.max_burst_jobs >= 0:
            slots = min(slots, self.max_burst_jobs - self._jobs_started())
        return max(slots, 0)

    async def _claim(self, slots: int) -> tuple[list[list[Any]], list[bytes]]:
        if self._claim_script is None:
            self._claim_script = self.pool.register_script(CLAIM)
        now = timestamp_ms()
        watch: BreakerWatch | None = self.ctx.get(BREAKER_CTX)
        result = await self._claim_script(
            keys=[self.queue_name, abort_jobs_ss, control.PAUSED, control.BREAKER],
            args=[now, slots, int(self.in_progress_timeout_s * 1000),
                  max(self.queue_read_limit, slots), in_progress_key_prefix, job_key_prefix,
                  retry_key_prefix, now - ABORT_KEPT_MS, int(self.allow_abort_jobs),
                  self._claim_token, control.BREAKER_HOLDS,
                  int(watch is not None and watch.holding)],
        )
        paused, held, epoch, next_probe_ms = result[2]
        self.paused = bool(paused)
        if watch is not None:  # the breaker as Redis has it, at no extra round trip
            watch.observe(bool(held), int(epoch), int(next_probe_ms) / 1000)
        return result[0], result[1]

    def _start(self, job_id: str, score: int, payload: bytes | None, job_try: int,
               aborted: bool) -> None:
        if job_id in self.tasks:
            # Claimed again while it runs here (its in-progress mark expired, or Redis
            # restarted empty and it was enqueued again): the run in progress finishes it,
            # under the mark this claim left in its in-progress key.
            logger.info("job %s is already running here; not starting it twice", job_id)
            self._marks[job_id] = self.claim_mark(job_try)
            return
        self._marks[job_id] = self.claim_mark(job_try)
        self.job_counter += 1
        task = self.loop.create_task(self._run_claimed(job_id, score, payload, job_try, aborted,
                                                       self.claim_mark(job_try)))
        self.tasks[job_id] = task
        task.add_done_callback(lambda done: self._job_done(job_id, done))

    def _trim_finished(self) -> list[Command]:
        return stats.finished_trim(time.time(), self.finished_window, self.finished_max)

    def finished_record(self, job_id: str, function: str, outcome: str, started_ms: int,
                        finished_ms: int) -> Command | None:
        """The entry of a finished run in the finished-jobs list (None when it is off)."""
        if self.finished_window <= 0 or self.finished_max <= 0:
            return None
        return finished_entry(job_id, function, outcome, started_ms, finished_ms)

    def claim_mark(self, job_try: int) -> str:
        """What the claim of try ``job_try`` left in the job's in-progress key."""
        return f"{self._claim_token}:{job_try}"

    def _job_done(self, job_id: str, task: asyncio.Task[None]) -> None:
        self.job_counter -= 1
        self._slot_freed.set()
        if self.tasks.get(job_id) is task:
            del self.tasks[job_id]
            self._marks.pop(job_id, None)
            self._sweeps.discard(job_id)
        if not task.cancelled() and task.exception() is not None:
            self._task_error = task.exception()

    def _cancel_aborting(self, job_ids: list[bytes]) -> None:
        for raw in job_ids:
            job_id = raw.decode()
            task = self.job_tasks.get(job_id)
            if task is not None and job_id not in self.aborting_tasks:
                self.aborting_tasks.add(job_id)
                task.cancel()

    async def _run_claimed(
        self, job_id: str, score: int, payload: bytes | None, job_try: int, aborted: bool,
        mark: str | None = None,
    ) -> None:
        start_ms = timestamp_ms()
        function_name, enqueue_time_ms = "<unknown>", 0
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}

        async def job_failed(exc: BaseException) -> None:
            self.jobs_failed += 1
            result_data = serialize_result(
                function_name, args, kwargs, job_try, enqueue_time_ms, False, exc, start_ms,
                timestamp_ms(), f"{job_id}:{function_name}", self.queue_name, job_id=job_id,
                serializer=self.job_serializer,
            )
            outcome = "aborted" if isinstance(exc, asyncio.CancelledError) else "failed"
            record = self.finished_record(job_id, function_name, outcome, start_ms,
                                          timestamp_ms())
            await shielded(self.finish_failed_job(job_id, result_data,
                                                  self._marks.get(job_id, mark), record))

        if not payload:
            logger.warning("job %s expired", job_id)
            return await job_failed(JobExecutionFailed("job expired"))
        try:
            function_name, args, kwargs, enqueue_job_try, enqueue_time_ms = deserialize_job_raw(
                payload, deserializer=self.job_deserializer
            )
        except SerializationError as exc:
            logger.exception("deserializing job %s failed", job_id)
            return await job_failed(exc)
        if aborted:
            logger.info("%s:%s aborted before start", job_id, function_name)
            return await job_failed(asyncio.CancelledError())
        function = self.functions.get(function_name)
        if function is None:
            logger.warning("job %s, function %r not found", job_id, function_name)
            return await job_failed(JobExecutionFailed(f"function {function_name!r} not found"))
        is_cron = hasattr(function, "next_run")
        if is_cron:
            self._sweeps.add(job_id)
        ref = function_name if is_cron else f"{job_id}:{function_name}"
        keep_in_progress = keep_cronjob_progress if is_cron else None
        if enqueue_job_try and enqueue_job_try > job_try:
            job_try = enqueue_job_try
            await self.pool.setex(retry_key_prefix + job_id, RETRY_KEY_TTL, str(job_try))
        max_tries = self.max_tries if function.max_tries is None else function.max_tries
        if job_try > max_tries:
            logger.warning("%s max retries %d exceeded", ref, max_tries)
            return await job_failed(JobExecutionFailed(f"max {max_tries} retries exceeded"))

        ctx = {**self.ctx, "job_id": job_id, "job_try": job_try,
               "enqueue_time": ms_to_datetime(enqueue_time_ms), "score": score}
        if self.on_job_start:
            await self.on_job_start(ctx)
        timeout_s = self.job_timeout_s if function.timeout_s is None else function.timeout_s
        result: Any = None
        finish, success, incr_score = False, False, None
        start_ms = timestamp_ms()
        this_task = asyncio.current_task()
        self.job_tasks[job_id] = this_task  # type: ignore[assignment]
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    result = await function.coroutine(ctx, *args, **kwargs)
            finally:
                if self.job_tasks.get(job_id) is this_task:
                    del self.job_tasks[job_id]
        except (Exception, asyncio.CancelledError) as exc:
            if self.retry_jobs and isinstance(exc, Retry):
                incr_score = exc.defer_score
                if exc.defer_score:
                    incr_score = exc.defer_score + (timestamp_ms() - score)
                logger.info("%s retrying job in %.2fs", ref, (exc.defer_score or 0) / 1000)
                self.jobs_retried += 1
            elif job_id in self.aborting_tasks and isinstance(exc, asyncio.CancelledError):
                logger.info("%s aborted", ref)
                result, finish = exc, True
                self.aborting_tasks.discard(job_id)
                self.jobs_failed += 1
            elif self.retry_jobs and isinstance(exc, asyncio.CancelledError | RetryJob):
                logger.info("%s cancelled, will be run again", ref)
                self.jobs_retried += 1
            elif self.retry_jobs and isinstance(exc, REDIS_LOST):
                # The worker's own outage (a failover, say), not the job's failure: the job
                # stays queued and runs again a second later, without a retry used up.
                logger.warning("%s: Redis connection lost (%r); it will be run again", ref, exc)
                incr_score = REDIS_LOST_DEFER_MS + (timestamp_ms() - score)
                self.jobs_retried += 1
            else:
                logger.exception("%s failed, %s: %s", ref, type(exc).__name__, exc)
                result, finish = exc, True
                self.jobs_failed += 1
        else:
            success = finish = True
            self.jobs_complete += 1
        finished_ms = timestamp_ms()
        keep_forever = (self.keep_result_forever if function.keep_result_forever is None
                        else function.keep_result_forever)
        result_timeout_s = (self.keep_result_s if function.keep_result_s is None
                            else function.keep_result_s)
        result_data = None
        if finish and (keep_forever or result_timeout_s > 0):
            result_data = serialize_result(
                function_name, args, kwargs, job_try, enqueue_time_ms, success, result, start_ms,
                finished_ms, ref, self.queue_name, job_id=job_id, serializer=self.job_serializer,
            )
        record = None
        if finish:
            record = self.finished_record(job_id, function_name, run_outcome(success, result),
                                          start_ms, finished_ms)
        if self.on_job_end:
            await self.on_job_end(ctx)
        await shielded(self.finish_job(job_id, finish, result_data, result_timeout_s,
                                       keep_forever, incr_score, keep_in_progress,
                                       self._marks.get(job_id, mark), record))
        if self.after_job_end:
            await self.after_job_end(ctx)

    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
        mark: str | None = None,
        record: Command | None = None,
    ) -> None:
        """arq's finish_job, sent with the other jobs finished in the same tick; with the
        claim's ``mark``, only while the job's in-progress key still holds it; ``record``
        enters a finished job in the finished-jobs list."""
        in_progress_key = in_progress_key_prefix + job_id
        commands: list[Command] = []
        delete_keys = []
        if keep_in_progress is None:
            delete_keys.append(in_progress_key)
        else:
            commands.append(command("PEXPIRE", in_progress_key, to_ms(keep_in_progress) or 0))
        if finish:
            if result_data:
                expire = None if keep_result_forever else to_ms(result_timeout_s)
                commands.append(command("SET", result_key_prefix + job_id, result_data,
                                        *(("PX", expire) if expire else ())))
            delete_keys += [retry_key_prefix + job_id, job_key_prefix + job_id]
            commands.append(command("ZREM", abort_jobs_ss, job_id))
            commands.append(command("ZREM", self.queue_name, job_id))
            if record is not None:
                commands.append(record)
        elif incr_score:
            commands.append(command("ZINCRBY", self.queue_name, incr_score, job_id))
        if delete_keys:
            commands.append(command("DEL", *delete_keys))
        await self.finish_batch.submit(guarded(in_progress_key, mark, commands))

    async def finish_failed_job(self, job_id: str, result_data: bytes | None,
                                mark: str | None = None, record: Command | None = None) -> None:
        """arq's finish_failed_job, sent with the other jobs finished in the same tick (with
        ``mark``, only while the claim holds)."""
        commands = [
            command("DEL", retry_key_prefix + job_id, in_progress_key_prefix + job_id,
                    job_key_prefix + job_id),
            command("ZREM", abort_jobs_ss, job_id),
            command("ZREM", self.queue_name, job_id),
        ]
        if record is not None:
            commands.append(record)
        if result_data is not None and (self.keep_result_forever or self.keep_result_s > 0):
            expire = None if self.keep_result_forever else to_ms(self.keep_result_s)
            commands.append(command("SET", result_key_prefix + job_id, result_data,
                                    *(("PX", expire) if expire else ())))
        await self.finish_batch.submit(guarded(in_progress_key_prefix + job_id, mark, commands))

    async def _sleep_until_tasks_complete(self) -> None:
        """The grace after a stop signal waits for the jobs, not for a running cron job:
        the reconciler's sweep holds nothing of anyone's, runs again at its next tick and
        may be waiting on a Redis that hangs. arq then cancels it with the rest."""
        while any(job_id not in self._sweeps for job_id in self.tasks):
            await asyncio.sleep(0.1)

    async def main(self) -> None:
        """arq's main loop; the finish batch is available to jobs through ctx."""
        self.ctx[FINISH_BATCH] = self.finish_batch
        await super().main()

    async def close(self) -> None:
        if self._finish_batch is not None and self._pool is not None:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            await self._finish_batch.close()
        await super().close()
