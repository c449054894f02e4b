"""Our real highlight job against a highlighter that takes 100 ms, beside plain arq and
Sidekiq measured in the same run: ``python -m bench.highlight``.

For each concurrency (200 and 1,000 by default), with one fresh private Valkey and one
stand-in highlighter (``bench.slow_highlighter``, 100 ms) for the row, one after the other:

- the client floor: one aiohttp session making the worker's HTTP call, 5,000 times
  (``bench.client_floor``);
- **ours**: the real ``run_worker.py`` with ``WORKER_MAX_JOBS`` = the concurrency, on
  5,000 snippets created in a fresh SQLite file with ``snippet_service.db`` and enqueued with
  ``snippet_service.queue.enqueue_highlight``;
- **plain arq**: the same jobs and SQLite setup under arq's stock ``Worker``
  (``bench.stock_worker``);
- **Sidekiq** ``-c`` the concurrency with ``bench/sidekiq/worker.rb`` (the seed's job: a
  form POST, no database), when ``sidekiq`` is installed (``bench.sidekiq``).

Then ``run_worker.py --processes 2`` at 200 each, and a memory row (ours and Sidekiq) where
the stand-in holds its answers 6 s so that 1,000 jobs are really in flight at once.

jobs/s runs from the stand-in's first request to the last job's end (the last ``updated_at``
in SQLite for ours and arq, the last answer for Sidekiq). CPU per job is the worker's process
tree (user + system, /proc through psutil) from its ready line to the end, per job. Peak RSS
is the tree's, sampled every 50 ms from spawn. Peak in flight and the stand-in's own CPU come
from its ``/stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from bench.client_floor import Floor, measure_floor
from bench.common import (
    Child,
    Table,
    app_env,
    mb,
    private_valkey,
    ratio,
    run,
    setup,
    target_line,
    times,
    work_dir,
)
from bench.runs import RunResult, timeout_for, watch
from bench.sidekiq import NOT_INSTALLED, SKIPPED, available, measure_sidekiq
from bench.slow_highlighter import StandIn, stand_in
from snippet_service import db, sqlite
from snippet_service.config import Config
from snippet_service.queue import enqueue_highlight, open_pool

logger = logging.getLogger("bench.highlight")

DELAY, JOBS, CONCURRENCY = 0.1, 5_000, (200, 1_000)
PROCESSES, PROCESSES_MAX_JOBS = 2, 200
RSS_DELAY, RSS_JOBS, RSS_CONCURRENCY = 6.0, 1_200, 1_000
OURS, ARQ, SIDEKIQ = "ours", "plain arq", "Sidekiq"
COMMANDS = {OURS: ["run_worker.py"], ARQ: ["-m", "bench.stock_worker"]}
READY = "Starting worker"  # arq's first line, once the worker takes jobs
TARGET_JOBS, TARGET_CPU, TARGET_RSS, TARGET_PROCESSES = 2.0, 0.5, 0.6, 1.7
# tasks.policy logs "<job id> failed (<error class>: <message>); retry N of M in S".
RETRY_LINE = re.compile(r" failed \((\w+): .*?\); retry \d+ of \d+")
CODE = "def f(n):\n    return [i * i for i in range(n)]  # snippet {}\n"


async def prepare(db_path: Path, redis_url: str, count: int) -> None:
    """Empty the queue's database, create ``count`` pending snippets, enqueue a job each."""
    database = sqlite.Database(db_path, 1)
    await database.open()
    try:
        snippets = [await db.create_snippet(database, "python", CODE.format(number))
                    for number in range(count)]
    finally:
        await database.close()
    pool = await open_pool(Config(redis_url=redis_url, db_path=db_path))
    try:
        await pool.flushdb()
        for first in range(0, count, 200):
            await asyncio.gather(*(enqueue_highlight(pool, snippet.id, snippet.revision)
                                   for snippet in snippets[first:first + 200]))
        queued = await pool.zcard(Config.queue_name)
    finally:
        await pool.aclose()
    if queued != count:
        raise RuntimeError(f"{queued} jobs queued for {count} snippets")


def statuses(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path, timeout=10) as conn:
        rows = conn.execute("SELECT status, count(*) FROM snippets GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


def last_update(db_path: Path) -> float:
    """The newest ``updated_at`` as a Unix time."""
    with sqlite3.connect(db_path, timeout=10) as conn:
        (value,) = conn.execute("SELECT max(updated_at) FROM snippets").fetchone()
    return db.parse_timestamp(str(value)).timestamp()


def measure_arq(name: str, stand: StandIn, redis_url: str, jobs: int, max_jobs: int,
                directory: Path, processes: int = 1) -> RunResult:
    """Ours (run_worker.py) or plain arq (bench.stock_worker) draining ``jobs`` snippets."""
    label = f"{name.replace(' ', '-')}-{max_jobs}x{processes}-{jobs}"
    db_path = directory / f"{label}.db"
    logger.info("%s max_jobs=%d x %d: creating and enqueueing %d snippets", name, max_jobs,
                processes, jobs)
    run(prepare(db_path, redis_url, jobs))
    env = app_env(REDIS_URL=redis_url, SNIPPETS_DB=str(db_path), HIGHLIGHTER_URL=stand.url,
                  WORKER_MAX_JOBS=str(max_jobs), WORKER_PROCESSES=str(processes))
    delay = float(stand.stats()["delay"])

    def finished(_stats: object) -> int:
        return sum(count for status, count in statuses(db_path).items() if status != db.PENDING)

    seen = watch(lambda: Child(label, COMMANDS[name], env, directory), READY, stand, jobs,
                 finished, timeout_for(jobs, max_jobs * processes, delay), processes)
    counts = statuses(db_path)
    if counts.get(db.PENDING, 0):
        logger.warning("%s max_jobs=%d: %d snippets still pending at the deadline", name,
                       max_jobs, counts[db.PENDING])
    first = float(seen.stats["first"])
    log = seen.child.log()
    result = RunResult(
        name=name, concurrency=max_jobs, jobs=jobs, done=counts.get(db.HIGHLIGHTED, 0),
        seconds=last_update(db_path) - first if first else 0.0, cpu_seconds=seen.cpu_seconds,
        peak_rss=seen.peak_rss, peak_in_flight=int(seen.stats["peak_in_flight"]),
        stand_in_cpu=seen.stand_in_cpu, stand_in_seconds=seen.stand_in_seconds, delay=delay,
        processes=processes, failed=counts.get(db.FAILED, 0), retries=log.count("\u21bb"),
    )
    reasons: dict[str, int] = {}
    for reason in RETRY_LINE.findall(log):
        reasons[reason] = reasons.get(reason, 0) + 1
    result.remarks.extend(f"{name} max_jobs={max_jobs}: retried after {reason} x {count:,}"
                          for reason, count in reasons.items())
    return result


@dataclass
class Row:
    """Every worker at one concurrency, against one Valkey and one stand-in."""

    concurrency: int
    delay: float
    results: dict[str, RunResult] = field(default_factory=dict)
    floor: Floor | None = None

    def get(self, name: str) -> RunResult | None:
        return self.results.get(name)


def measure_row(concurrency: int, jobs: int, delay: float, directory: Path,
                floor: bool = True, workers: tuple[str, ...] = (OURS, ARQ, SIDEKIQ)) -> Row:
    """The client floor (unless ``floor`` is false), then each of ``workers`` in turn."""
    row = Row(concurrency, delay)
    with private_valkey(directory) as redis_url, stand_in(directory, delay) as stand:
        if floor:
            logger.info("client floor: %d calls at concurrency %d", jobs, concurrency)
            row.floor = measure_floor(stand.url, jobs, concurrency, directory)
        for name in (OURS, ARQ):
            if name in workers:
                row.results[name] = measure_arq(name, stand, redis_url, jobs, concurrency,
                                                directory)
        if SIDEKIQ in workers:
            sidekiq = measure_sidekiq(redis_url, stand.url, jobs, concurrency, directory)
            if sidekiq is not None:
                row.results[SIDEKIQ] = sidekiq
    for result in row.results.values():
        logger.info("%s at %d, delay %.1fs: %.0f jobs/s, %.0f us CPU/job, peak RSS %.1f MB",
                    result.name, concurrency, delay, result.jobs_per_s, result.cpu_us_per_job,
                    mb(result.peak_rss))
    return row


def measure_processes(max_jobs: int, jobs: int, directory: Path) -> RunResult:
    with private_valkey(directory) as redis_url, stand_in(directory, DELAY) as stand:
        return measure_arq(OURS, stand, redis_url, jobs, max_jobs, directory, PROCESSES)


def results_table(rows: list[Row], extra: list[RunResult]) -> Table:
    table = Table(
        "highlight job: ours (run_worker.py), plain arq (stock Worker), Sidekiq 6.4,"
        " against bench.slow_highlighter",
        ["worker", "max_jobs / -c", "processes", "delay ms", "jobs", "jobs/s", "CPU us/job",
         "peak RSS MB", "peak in flight", "stand-in CPU %", "failed", "retries"],
    )
    for result in [r for row in rows for r in row.results.values()] + extra:
        table.add(result.name, result.concurrency, result.processes, result.delay * 1000,
                  result.jobs, result.jobs_per_s, result.cpu_us_per_job, mb(result.peak_rss),
                  result.peak_in_flight, result.stand_in_cpu_percent, result.failed,
                  result.retries)
        table.notes.extend(result.remarks)
    table.notes.append(
        "CPU us/job: the worker's process tree (user + system) from its ready line to the"
        " end, per job. stand-in CPU %: of one core while it served the run. Sidekiq's job"
        " has no database read or write; ours and plain arq's do."
    )
    if not available():
        table.notes.append(f"Sidekiq: {SKIPPED}")
    return table


def ratios_table(rows: list[Row]) -> Table:
    table = Table(
        "highlight job: ratios at the same concurrency (ours / reference)",
        ["max_jobs / -c", "delay ms", "jobs/s vs Sidekiq", "CPU/job vs Sidekiq",
         "RSS vs Sidekiq", "jobs/s vs arq", "CPU/job vs arq", "RSS vs arq",
         "floor us/call", "ours CPU/job / floor", "arq CPU/job / floor"],
    )
    for row in rows:
        ours = row.get(OURS)
        if ours is None:
            continue
        cells: list[object] = [row.concurrency, row.delay * 1000]
        for name in (SIDEKIQ, ARQ):
            ref = row.get(name)
            cells += [times(ratio(ours.jobs_per_s, ref.jobs_per_s)) if ref else "-",
                      times(ratio(ours.cpu_us_per_job, ref.cpu_us_per_job)) if ref else "-",
                      times(ratio(ours.peak_rss, ref.peak_rss)) if ref else "-"]
        floor = row.floor.cpu_us_per_call if row.floor else math.nan
        arq = row.get(ARQ)
        cells += [floor, times(ratio(ours.cpu_us_per_job, floor)),
                  times(ratio(arq.cpu_us_per_job, floor)) if arq else "-"]
        table.add(*cells)
    table.notes.append(
        "floor: bench.client_floor, one aiohttp session making the same call"
        " (tasks.client.highlight) at the same concurrency, CPU per call."
    )
    return table


def targets(rows: list[Row], memory: Row | None, processes: RunResult | None) -> list[str]:
    lines = []
    ours = [r for row in rows for r in row.results.values() if r.name == OURS]
    sidekiq = [r for row in rows for r in row.results.values() if r.name == SIDEKIQ]
    name = f"highlight jobs/s >= {TARGET_JOBS}x Sidekiq's best (one process each)"
    if ours and sidekiq:
        best = max(ours, key=lambda r: r.jobs_per_s)
        ref = max(sidekiq, key=lambda r: r.jobs_per_s)
        got = ratio(best.jobs_per_s, ref.jobs_per_s)
        lines.append(target_line(name, got >= TARGET_JOBS, (
            f"ours {best.jobs_per_s:,.0f}/s (max_jobs={best.concurrency}) ="
            f" {times(got)} Sidekiq's {ref.jobs_per_s:,.0f}/s (-c {ref.concurrency})")))
    elif ours:
        lines.append(target_line(name, None, NOT_INSTALLED))
    name = f"highlight CPU per job <= {TARGET_CPU}x Sidekiq's (same concurrency)"
    pairs = [(row.results[OURS], row.results[SIDEKIQ]) for row in rows
             if OURS in row.results and SIDEKIQ in row.results]
    if pairs:
        cpu = [ratio(a.cpu_us_per_job, b.cpu_us_per_job) for a, b in pairs]
        lines.append(target_line(name, max(cpu) <= TARGET_CPU, "; ".join(
            f"{a.concurrency}: ours {a.cpu_us_per_job:,.0f} us vs {b.cpu_us_per_job:,.0f} us"
            f" = {times(g)}" for (a, b), g in zip(pairs, cpu, strict=True))))
    elif ours:
        lines.append(target_line(name, None, NOT_INSTALLED))
    if memory is not None:
        name = (f"worker peak RSS with {RSS_CONCURRENCY:,} in flight <= {TARGET_RSS}x"
                " Sidekiq's")
        mine, theirs = memory.get(OURS), memory.get(SIDEKIQ)
        if mine is None or theirs is None:
            lines.append(target_line(name, None, NOT_INSTALLED))
        else:
            full = min(mine.peak_in_flight, theirs.peak_in_flight) >= RSS_CONCURRENCY
            got = ratio(mine.peak_rss, theirs.peak_rss)
            lines.append(target_line(name, full and got <= TARGET_RSS, (
                f"ours {mb(mine.peak_rss):.1f} MB ({mine.peak_in_flight:,} in flight) ="
                f" {times(got)} Sidekiq's {mb(theirs.peak_rss):.1f} MB"
                f" ({theirs.peak_in_flight:,} in flight)")))
    one = next((r for r in ours if processes and r.concurrency == processes.concurrency), None)
    if processes is not None and one is not None:
        got = ratio(processes.jobs_per_s, one.jobs_per_s)
        lines.append(target_line(
            f"--processes {PROCESSES} >= {TARGET_PROCESSES}x one process",
            got >= TARGET_PROCESSES,
            f"{processes.jobs_per_s:,.0f}/s with {PROCESSES} x {processes.concurrency} ="
            f" {times(got)} one process's {one.jobs_per_s:,.0f}/s"))
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs per throughput run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY),
                        help="WORKER_MAX_JOBS and sidekiq -c of the throughput rows")
    parser.add_argument("--processes", action=argparse.BooleanOptionalAction, default=True,
                        help=f"the run_worker.py --processes {PROCESSES} row")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help=f"the row with {RSS_CONCURRENCY:,} jobs in flight")
    args = parser.parse_args(argv)
    setup("highlight")
    rows: list[Row] = []
    extra: list[RunResult] = []
    processes: RunResult | None = None
    memory: Row | None = None
    for concurrency in args.concurrency:
        with work_dir(f"highlight-{concurrency}") as directory:
            rows.append(measure_row(concurrency, args.jobs, DELAY, directory))
    if args.processes:
        max_jobs = (PROCESSES_MAX_JOBS if PROCESSES_MAX_JOBS in args.concurrency
                    else args.concurrency[0])
        with work_dir("highlight-processes") as directory:
            processes = measure_processes(max_jobs, args.jobs, directory)
        extra.append(processes)
    if args.memory:
        with work_dir("highlight-memory") as directory:
            memory = measure_row(RSS_CONCURRENCY, RSS_JOBS, RSS_DELAY, directory, floor=False,
                                 workers=(OURS, SIDEKIQ))
        extra.extend(memory.results.values())
    results_table(rows, extra).print()
    table = ratios_table(rows + ([memory] if memory else []))
    table.notes.extend(targets(rows, memory, processes))
    table.print()


if __name__ == "__main__":
    main()
