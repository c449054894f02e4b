"""Our real highlight job against a highlighter that takes 100 ms: ``python -m bench.highlight``.

For each WORKER_MAX_JOBS setting, with a fresh SQLite file and a fresh private Valkey:
create the snippets with ``snippet_service.db``, enqueue their jobs with
``snippet_service.queue.enqueue_highlight``, then start the real ``run_worker.py`` (pointed
at ``bench.slow_highlighter``) and poll SQLite until no snippet is pending.

jobs/s counts from the first request the highlighter receives (the first job start, within
a millisecond) to the last ``updated_at`` written. Peak RSS is the worker process and its
children, sampled every 50 ms from spawn to the end. Worker CPU % is measured from the
worker's "Starting worker" log line to the end (100 % = one core). Peak in flight is the
most requests the highlighter held at once.

A last run holds the highlighter's answer for several seconds so that 1,000 jobs are
really in flight at once (with 100 ms, jobs finish faster than a CPU-bound worker starts
them); the RSS target is judged on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import sqlite3
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    CPU_COUNT,
    Child,
    RssSampler,
    Table,
    app_env,
    cpu_seconds,
    mb,
    private_valkey,
    run,
    setup,
    target_line,
    work_dir,
)
from snippet_service import db
from snippet_service.config import Config
from snippet_service.queue import enqueue_highlight, open_pool
from snippet_service.valkey import free_port

logger = logging.getLogger("bench.highlight")

HIGHLIGHTER_DELAY = 0.1
RSS_DELAY = 6.0
# (WORKER_MAX_JOBS, snippets, highlighter delay, worker processes): fewer snippets for 25,
# which cannot pass 250 jobs/s; a run with `run_worker.py --processes 2`; the last run is
# for memory with 1,000 jobs in flight.
RUNS = ((25, 1_000, HIGHLIGHTER_DELAY, 1), (200, 5_000, HIGHLIGHTER_DELAY, 1),
        (1_000, 5_000, HIGHLIGHTER_DELAY, 1), (2_000, 5_000, HIGHLIGHTER_DELAY, 1),
        (200, 5_000, HIGHLIGHTER_DELAY, 2), (1_000, 1_200, RSS_DELAY, 1))
SIDEKIQ_JOBS_PER_S = {25: 240, 200: 1_325, 1_000: 911}
ARQ_JOBS_PER_S = {25: 166, 200: 1_242, 1_000: 1_852}
SIDEKIQ_RSS_MB, ARQ_RSS_MB = 93, 51  # at 1,000 in flight
TARGET_JOBS_PER_S, TARGET_RSS_MB = 2_500, 60
# tasks.policy logs "<job id> failed (<error class>: <message>); retry N of M in S".
RETRY_LINE = re.compile(r" failed \((\w+): .*?\); retry \d+ of \d+")
CODE = "def f(n):\n    return [i * i for i in range(n)]  # snippet {}\n"


@dataclass
class Result:
    max_jobs: int
    processes: int
    snippets: int
    delay: float
    highlighted: int
    failed: int
    seconds: float
    peak_in_flight: int
    peak_rss: int
    cpu_percent: float
    retries: int
    retry_reasons: Counter[str]

    @property
    def jobs_per_s(self) -> float:
        return self.highlighted / self.seconds if self.seconds > 0 else 0.0


async def prepare(db_path: Path, redis_url: str, count: int) -> None:
    """Create ``count`` pending snippets and enqueue one highlight job each."""
    database = db.Database(db_path, 1)
    await database.open()
    try:
        snippets = [await db.create_snippet(database, "python", CODE.format(number))
                    for number in range(count)]
    finally:
        await database.close()
    pool = await open_pool(Config(redis_url=redis_url, db_path=db_path))
    try:
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


def highlighter_stats(url: str) -> dict[str, float]:
    """The slow highlighter's counters (straight to 127.0.0.1, whatever *_proxy says)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url + "stats", timeout=10) as response:
        stats: dict[str, float] = json.load(response)
    return stats


def measure(max_jobs: int, count: int, delay: float, processes: int,
            directory: Path) -> Result:
    """One run: fresh Valkey, SQLite file and highlighter; the real worker process."""
    db_path = directory / "snippets.db"
    with private_valkey(directory) as redis_url:
        logger.info("max_jobs=%d: creating and enqueueing %d snippets", max_jobs, count)
        run(prepare(db_path, redis_url, count))
        port = free_port()
        env = app_env()
        highlighter = Child("slow-highlighter",
                            ["-m", "bench.slow_highlighter", str(port), str(delay)],
                            env, directory)
        worker: Child | None = None
        try:
            highlighter.wait_for_port(port)
            url = f"http://127.0.0.1:{port}/"
            worker = Child("worker", ["run_worker.py"], app_env(
                REDIS_URL=redis_url, SNIPPETS_DB=str(db_path), HIGHLIGHTER_URL=url,
                WORKER_MAX_JOBS=str(max_jobs), WORKER_PROCESSES=str(processes)), directory)
            with RssSampler(worker.pid) as sampler:
                worker.wait_for_log("Starting worker", timeout=30)
                started, cpu_start = time.monotonic(), cpu_seconds(worker.pid)
                deadline = started + 30 + delay * 3 + count / 50
                counts = statuses(db_path)
                while counts.get(db.PENDING, 0) and time.monotonic() < deadline:
                    if worker.popen.poll() is not None:
                        raise RuntimeError(f"worker exited:\n{worker.log()[-3000:]}")
                    time.sleep(0.05)
                    counts = statuses(db_path)
                cpu_percent = 100 * (cpu_seconds(worker.pid) - cpu_start) / (
                    time.monotonic() - started)
            stats = highlighter_stats(url)
        finally:
            if worker is not None:
                worker.stop()
            highlighter.stop()
        if counts.get(db.PENDING, 0):
            logger.warning("max_jobs=%d: %d snippets still pending at the deadline",
                           max_jobs, counts[db.PENDING])
        log = worker.log()
        return Result(
            max_jobs=max_jobs, processes=processes, snippets=count, delay=delay,
            highlighted=counts.get(db.HIGHLIGHTED, 0), failed=counts.get(db.FAILED, 0),
            seconds=last_update(db_path) - stats["first"] if stats["first"] else 0.0,
            peak_in_flight=int(stats["peak_in_flight"]), peak_rss=sampler.peak,
            cpu_percent=cpu_percent, retries=log.count("\u21bb"),
            retry_reasons=Counter(RETRY_LINE.findall(log)),
        )


def report(results: list[Result]) -> Table:
    table = Table(
        "highlight job: real run_worker.py against bench.slow_highlighter",
        ["max_jobs", "processes", "delay ms", "snippets", "jobs/s", "seconds", "peak in flight",
         "peak RSS MB", "worker CPU %", "failed", "retries", "Sidekiq jobs/s (ref)",
         "arq jobs/s (ref)", "Sidekiq RSS MB (ref)", "arq RSS MB (ref)"],
    )
    for r in results:
        throughput_run = r.delay == HIGHLIGHTER_DELAY
        refs = ((SIDEKIQ_JOBS_PER_S.get(r.max_jobs, "-"), ARQ_JOBS_PER_S.get(r.max_jobs, "-"))
                if throughput_run and r.processes == 1 else ("-", "-"))
        refs_rss = ((SIDEKIQ_RSS_MB, ARQ_RSS_MB) if r.max_jobs == 1_000 and r.processes == 1
                    else ("-", "-"))
        table.add(r.max_jobs, r.processes, r.delay * 1000, r.snippets, r.jobs_per_s, r.seconds,
                  r.peak_in_flight, mb(r.peak_rss), r.cpu_percent, r.failed, r.retries,
                  *refs, *refs_rss)
    for r in results:
        if r.retry_reasons:
            reasons = ", ".join(f"{name} x {count:,}" for name, count in
                                r.retry_reasons.most_common())
            table.notes.append(f"max_jobs={r.max_jobs}: retried after {reasons}")
    table.notes.append(
        f"ceiling: max_jobs / delay (25 -> 250/s at {HIGHLIGHTER_DELAY * 1000:.0f} ms);"
        f" worker CPU % of one core ({CPU_COUNT} CPUs; the highlighter, Valkey and this"
        " script share them). Reference RSS figures are at 1,000 in flight."
    )
    at_1000 = next((r for r in results if r.max_jobs == 1_000 and r.processes == 1
                    and r.delay == HIGHLIGHTER_DELAY), None)
    best = max((r for r in results if r.delay == HIGHLIGHTER_DELAY),
               key=lambda r: r.jobs_per_s, default=None)
    if at_1000 is not None and best is not None:
        table.notes.append(target_line(
            f"highlight jobs/s >= {TARGET_JOBS_PER_S:,}",
            at_1000.jobs_per_s >= TARGET_JOBS_PER_S,
            f"{at_1000.jobs_per_s:,.0f}/s at max_jobs=1000; best {best.jobs_per_s:,.0f}/s at"
            f" max_jobs={best.max_jobs} with {best.processes} process(es)",
        ))
    full = [r for r in results if r.peak_in_flight >= 1_000 and r.processes == 1]
    if full:
        peak = max(r.peak_rss for r in full)
        table.notes.append(target_line(
            f"worker peak RSS <= {TARGET_RSS_MB} MB with 1,000 in flight",
            mb(peak) <= TARGET_RSS_MB,
            f"{mb(peak):.1f} MB with {max(r.peak_in_flight for r in full):,} in flight",
        ))
    elif any(r.max_jobs >= 1_000 for r in results):
        table.notes.append(target_line(
            f"worker peak RSS <= {TARGET_RSS_MB} MB with 1,000 in flight", False,
            "no run reached 1,000 jobs in flight"))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-jobs", type=int, nargs="*",
                        help="only the runs with these WORKER_MAX_JOBS (default: all runs)")
    parser.add_argument("--snippets", type=int, help="snippets per run (default: per run)")
    args = parser.parse_args(argv)
    setup("highlight")
    runs = [(jobs, args.snippets or count, delay, procs) for jobs, count, delay, procs in RUNS
            if not args.max_jobs or jobs in args.max_jobs]
    known = {jobs for jobs, _count, _delay, _procs in RUNS}
    runs += [(jobs, args.snippets or 5_000, HIGHLIGHTER_DELAY, 1)
             for jobs in args.max_jobs or [] if jobs not in known]
    results = []
    for max_jobs, count, delay, processes in runs:
        with work_dir(f"highlight-{max_jobs}-{processes}") as directory:
            results.append(measure(max_jobs, count, delay, processes, directory))
            logger.info("max_jobs=%d, delay %.1fs: %.0f jobs/s, peak RSS %.1f MB", max_jobs,
                        delay, results[-1].jobs_per_s, mb(results[-1].peak_rss))
    report(results).print()


if __name__ == "__main__":
    main()
