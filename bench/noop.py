"""No-op job throughput of our arq worker configuration: ``python -m bench.noop``.

Enqueues no-op jobs with arq's ``enqueue_job`` (gathered in batches), then drains them with
an in-process worker in burst mode built from ``tasks.worker.worker_settings`` (the JSON
serializer, ``poll_delay``, ``max_jobs``, ``keep_result``...) on asyncio's own loop as
run_worker.py, the job wrapped by ``tasks.policy.job`` like every job of ours (a retry
policy with its timeout, and the dashboard's job counters), arq's log lines going to a
file as ``run_worker.py`` has them:

- ``arq.worker.Worker``: arq's stock worker, which starts jobs one at a time;
- ``tasks.hotpath.BatchWorker``: ours, claiming and finishing jobs in batches.

With ``sidekiq`` installed, Sidekiq drains as many no-op jobs (``NoopWorker`` in
``bench/sidekiq/worker.rb``, pushed with ``push_bulk``) at its default concurrency, for a
same-run reference. Target: BatchWorker >= 8,700 jobs/s, Sidekiq's figure on the 2-CPU
development machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from pathlib import Path
from typing import Any

from arq.connections import ArqRedis, create_pool
from arq.worker import Function, Worker

from bench import sidekiq
from bench.common import (
    Table,
    private_valkey,
    ratio,
    setup,
    target_line,
    times,
    work_dir,
)
from snippet_service.config import Config
from snippet_service.queue import deserialize, redis_settings, serialize
from snippet_service.stats import JobCounter
from tasks.hotpath import BatchWorker
from tasks.policy import job
from tasks.retry import RetryPolicy
from tasks.worker import QuietJobLines, worker_settings

logger = logging.getLogger("bench.noop")

TARGET_JOBS_PER_S = 8_700  # Sidekiq 6.4.1, no-op jobs, on the 2-CPU development machine
SIDEKIQ_CONCURRENCY = 10  # Sidekiq's default
JOBS = 20_000
BATCH = 200
QUEUE = "bench:noop"
NAME = "noop"
STOCK, BATCHED = "arq.worker.Worker", "tasks.hotpath.BatchWorker"


async def noop(ctx: dict[str, Any]) -> None:
    """The job: nothing at all."""


def with_policy() -> Function:
    return job(noop, name=NAME, policy=RetryPolicy(retry=10, timeout=10.0))


def worker_class(name: str) -> type[Worker]:
    """arq's Worker or our BatchWorker."""
    return Worker if name == STOCK else BatchWorker


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
    """arq's log lines: INFO to a file, less the per-job lines, as run_worker.py has them;
    or nothing (``None``)."""
    arq_logger = logging.getLogger("arq")
    for handler in list(arq_logger.handlers):
        arq_logger.removeHandler(handler)
        handler.close()
    for log_filter in list(arq_logger.filters):
        arq_logger.removeFilter(log_filter)
    arq_logger.propagate = False
    if log_file is None:
        arq_logger.setLevel(logging.WARNING)
        arq_logger.addHandler(logging.NullHandler())
    else:
        arq_logger.setLevel(logging.INFO)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        arq_logger.addHandler(handler)
        logging.getLogger("arq.worker").addFilter(QuietJobLines())


async def drain(config: Config, kind: type[Worker]) -> tuple[float, float, int]:
    """Run a burst worker of class ``kind`` until the queue is empty.

    :return: wall and CPU seconds from the worker's startup hook until it exits, jobs done
    """
    started: list[float] = []

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["stats"] = JobCounter()  # flushed once a second by the real worker
        ctx["running"] = {}  # for the real worker's on_job_start/on_job_end, kept here
        started[:] = [time.perf_counter(), time.process_time()]

    options = {**worker_settings(config), "functions": [with_policy()], "cron_jobs": None,
               "queue_name": QUEUE, "burst": True, "handle_signals": False,
               "on_startup": on_startup, "on_shutdown": None}
    worker = kind(**options)
    try:
        await worker.main()
        wall, cpu = time.perf_counter() - started[0], time.process_time() - started[1]
        return wall, cpu, worker.jobs_complete
    finally:
        await worker.close()


async def measure(redis_url: str, jobs: int, batch: int,
                  log_dir: Path) -> tuple[Table, dict[str, float]]:
    """Drain ``jobs`` no-op jobs with each worker class; the table and each one's jobs/s."""
    config = Config(redis_url=redis_url)
    pool = await create_pool(redis_settings(config), job_serializer=serialize,
                             job_deserializer=deserialize, default_queue_name=QUEUE)
    options = worker_settings(config)
    table = Table(
        f"no-op jobs under tasks.policy.job, from tasks.worker.worker_settings (JSON, asyncio loop,"
        f" poll_delay={options['poll_delay']}s, max_jobs={options['max_jobs']})",
        ["drain", "jobs", "enqueue jobs/s", "drain jobs/s", "drain s", "worker CPU %",
         "CPU us/job", f"vs {TARGET_JOBS_PER_S:,}/s"],
    )
    rates: dict[str, float] = {}
    try:
        for name in (STOCK, BATCHED):
            kind = worker_class(name)
            await pool.flushdb()
            logger.info("%s: enqueueing %d no-op jobs in batches of %d", name, jobs, batch)
            enqueue_s = await enqueue(pool, jobs, batch)
            arq_logging(log_dir / "arq.log")
            try:
                drain_s, cpu_s, completed = await drain(config, kind)
            finally:
                arq_logging(None)
            if completed != jobs:
                table.notes.append(f"!! {name}: {completed} of {jobs} jobs completed")
            rates[name] = completed / drain_s
            table.add(name, jobs, jobs / enqueue_s, rates[name], drain_s, 100 * cpu_s / drain_s,
                      1e6 * cpu_s / max(completed, 1),
                      times(ratio(rates[name], TARGET_JOBS_PER_S)))
    finally:
        await pool.aclose()
    table.notes.append(
        f"enqueue: enqueue_job (WATCH, EXISTS, MULTI/PSETEX/ZADD/EXEC each), {batch} gathered"
        " at a time; drain: from the worker's on_startup until the burst worker exits;"
        " worker CPU % of one core (the worker runs in this process)."
    )
    return table, rates


def sidekiq_row(table: Table, redis_url: str, jobs: int, directory: Path) -> float:
    """Add Sidekiq's no-op drain to the table; its jobs/s, nan without Sidekiq."""
    measured = sidekiq.measure_noop(redis_url, jobs, SIDEKIQ_CONCURRENCY, directory)
    if measured is None:
        table.notes.append(f"Sidekiq no-op reference: {sidekiq.SKIPPED}")
        return math.nan
    rate, cpu_us = measured
    table.add(f"Sidekiq 6.4 -c {SIDEKIQ_CONCURRENCY} (ref)", jobs, "-", rate, jobs / rate, "-",
              cpu_us, times(ratio(rate, TARGET_JOBS_PER_S)))
    table.notes.append("Sidekiq: push_bulk, then from its ready line until its queue is"
                       " empty; CPU of the sidekiq process.")
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs per drain")
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    setup("noop")
    with work_dir("noop") as directory, private_valkey(directory) as redis_url:
        # asyncio's own loop, as run_worker.py runs the worker
        table, rates = asyncio.run(measure(redis_url, args.jobs, args.batch, directory))
        reference = sidekiq_row(table, redis_url, args.jobs, directory)
    name = f"no-op jobs/s of {BATCHED} >= {TARGET_JOBS_PER_S:,} (Sidekiq's)"
    same_run = "" if math.isnan(reference) else f"; Sidekiq {reference:,.0f}/s in this run"
    rate = rates[BATCHED]
    table.notes.append(target_line(name, rate >= TARGET_JOBS_PER_S, f"{rate:,.0f}/s{same_run}"))
    table.print()


if __name__ == "__main__":
    main()
