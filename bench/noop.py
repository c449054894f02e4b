"""No-op job throughput of our arq worker configuration: ``python -m bench.noop``.

Enqueues no-op jobs with arq's ``enqueue_job`` (gathered in batches), then drains them with
an in-process arq ``Worker`` in burst mode built from ``tasks.worker.worker_options`` (the
JSON serializer, ``poll_delay``, ``max_jobs``, ``keep_result``...) on uvloop. Three drains:

- ``arq``: a bare async function, arq's logger at WARNING;
- ``+ INFO log``: arq's two INFO lines a job written to a file, as ``run_worker.py``
  configures logging;
- ``our worker``: also wrapped by ``tasks.policy.job`` like every job of ours (a retry
  policy with its timeout, and the dashboard's job counters).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.worker import Function, Worker, func

from bench.common import Table, private_valkey, run, setup, work_dir
from snippet_service.config import Config
from snippet_service.queue import deserialize, redis_settings, serialize
from snippet_service.retry import RetryPolicy
from snippet_service.stats import JobCounter
from tasks.policy import job
from tasks.worker import worker_options

logger = logging.getLogger("bench.noop")

SIDEKIQ_NOOP_JOBS_PER_S = 8_700
JOBS = 20_000
BATCH = 200
QUEUE = "bench:noop"
NAME = "noop"


async def noop(ctx: dict[str, Any]) -> None:
    """The job: nothing at all."""


def bare() -> Function:
    return func(noop, name=NAME)


def with_policy() -> Function:
    return job(noop, name=NAME, policy=RetryPolicy(retry=10, timeout=10.0))


# (row name, job function, write arq's INFO lines to a file, share of --jobs): the first two
# rows only show what arq itself and its logging cost, so they run half as many jobs.
VARIANTS: tuple[tuple[str, Callable[[], Function], bool, float], ...] = (
    ("arq, logger at WARNING", bare, False, 0.5),
    ("arq + INFO log to a file", bare, True, 0.5),
    ("our worker: + tasks.policy.job", with_policy, True, 1.0),
)


async def enqueue(pool: ArqRedis, jobs: int, batch: int) -> float:
    """Enqueue the jobs with enqueue_job, ``batch`` at a time; return the seconds taken."""
    started = time.perf_counter()
    for first in range(0, jobs, batch):
        await asyncio.gather(*(
            pool.enqueue_job(NAME, _queue_name=QUEUE)
            for _ in range(first, min(first + batch, jobs))
        ))
    return time.perf_counter() - started


def arq_logging(log_file: Path | None) -> None:
    """arq's log lines: INFO to a file as run_worker.py would, or WARNING and up only."""
    arq_logger = logging.getLogger("arq")
    for handler in list(arq_logger.handlers):
        arq_logger.removeHandler(handler)
        handler.close()
    arq_logger.propagate = False
    if log_file is None:
        arq_logger.setLevel(logging.WARNING)
        arq_logger.addHandler(logging.NullHandler())
    else:
        arq_logger.setLevel(logging.INFO)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        arq_logger.addHandler(handler)


async def drain(config: Config, function: Function) -> tuple[float, float, int]:
    """Run a burst worker until the queue is empty.

    :return: wall and CPU seconds from the worker's startup hook until it exits, jobs done
    """
    started: list[float] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["config"] = config
        ctx["stats"] = JobCounter()  # flushed once a second by the real worker's runner
        started[:] = [time.perf_counter(), time.process_time()]

    options = {**worker_options(config), "functions": [function], "queue_name": QUEUE,
               "burst": True, "handle_signals": False, "on_startup": on_startup}
    worker = Worker(**options)
    try:
        await worker.main()
        wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        return wall, cpu, worker.jobs_complete
    finally:
        await worker.close()


async def measure(redis_url: str, total: int, batch: int, log_dir: Path) -> Table:
    config = Config(redis_url=redis_url)
    pool = await create_pool(redis_settings(config), job_serializer=serialize,
                             job_deserializer=deserialize, default_queue_name=QUEUE)
    options = worker_options(config)
    table = Table(
        f"no-op jobs: arq Worker from tasks.worker.worker_options (JSON, uvloop,"
        f" poll_delay={options['poll_delay']}s, max_jobs={options['max_jobs']})",
        ["drain", "jobs", "enqueue jobs/s", "drain jobs/s", "drain s", "worker CPU %",
         "CPU us/job", "Sidekiq jobs/s (ref)", "drain / Sidekiq"],
    )
    try:
        for name, function, log_to_file, share in VARIANTS:
            jobs = max(1, int(total * share))
            await pool.flushdb()
            logger.info("%s: enqueueing %d no-op jobs in batches of %d", name, jobs, batch)
            enqueue_s = await enqueue(pool, jobs, batch)
            arq_logging(log_dir / "arq.log" if log_to_file else None)
            try:
                drain_s, cpu_s, completed = await drain(config, function())
            finally:
                arq_logging(None)
            if completed != jobs:
                table.notes.append(f"!! {name}: {completed} of {jobs} jobs completed")
            rate = completed / drain_s
            table.add(name, jobs, jobs / enqueue_s, rate, drain_s, 100 * cpu_s / drain_s,
                      1e6 * cpu_s / max(completed, 1), SIDEKIQ_NOOP_JOBS_PER_S,
                      f"{rate / SIDEKIQ_NOOP_JOBS_PER_S:.2f}x")
    finally:
        await pool.aclose()
    table.notes.append(
        f"enqueue: enqueue_job (WATCH, EXISTS, MULTI/PSETEX/ZADD/EXEC each), {batch} gathered"
        " at a time; drain: from the worker's on_startup until the burst worker exits;"
        " worker CPU % of one core."
    )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS,
                        help="jobs for our worker's drain (half as many for the others)")
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    setup("noop")
    with work_dir("noop") as directory, private_valkey(directory) as redis_url:
        table = run(measure(redis_url, args.jobs, args.batch, directory))
    table.print()


if __name__ == "__main__":
    main()
