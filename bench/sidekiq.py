"""The Sidekiq reference, measured in the same run as ours when ``sidekiq`` is on PATH
(Debian: ``apt-get install ruby-sidekiq``, Sidekiq 6.4.1); otherwise every function here
returns None and the benchmarks print "skipped: sidekiq not installed".

``bench/sidekiq/worker.rb`` holds the seed's ``PygmentsWorker`` without Rails (each job
``Net::HTTP.post_form``\\ s lang and code to the stand-in, a new connection each time, no
database) and a ``NoopWorker``; ``bench/sidekiq/push.rb`` queues N jobs with
``Sidekiq::Client.push_bulk``. ``sidekiq -c N -r bench/sidekiq/worker.rb`` then drains
them from the same private Valkey (Sidekiq 6.4 sizes its Redis pool at N + 5 itself).

``python -m bench.sidekiq [--jobs N] [--concurrency N ...]`` measures it alone.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import subprocess
import time
from pathlib import Path
from typing import cast

import redis

from bench.common import (
    ROOT,
    Child,
    Table,
    app_env,
    cpu_seconds,
    flush_valkey,
    mb,
    private_valkey,
    setup,
    work_dir,
)
from bench.runs import RunResult, timeout_for, watch
from bench.slow_highlighter import StandIn, stand_in

logger = logging.getLogger("bench.sidekiq")

NOT_INSTALLED = "sidekiq not installed"
SKIPPED = f"skipped: {NOT_INSTALLED}"
WORKER_RB = ROOT / "bench" / "sidekiq" / "worker.rb"
PUSH_RB = ROOT / "bench" / "sidekiq" / "push.rb"
READY = "bench: ready"  # worker.rb logs it from Sidekiq's startup event
QUEUE = "queue:default"
SHUTDOWN_SECONDS = 5


def available() -> bool:
    """Whether Sidekiq (and the Ruby it runs on) is installed."""
    return shutil.which("sidekiq") is not None and shutil.which("ruby") is not None


def push(redis_url: str, worker_class: str, jobs: int) -> None:
    """Queue ``jobs`` jobs of ``worker_class`` with push_bulk, on an emptied database."""
    flush_valkey(redis_url)
    subprocess.run(["ruby", str(PUSH_RB), worker_class, str(jobs)], cwd=ROOT, check=True,
                   env=app_env(REDIS_URL=redis_url), stdout=subprocess.DEVNULL, timeout=120)


def start(redis_url: str, highlighter_url: str, concurrency: int, directory: Path,
          name: str) -> Child:
    """``sidekiq -c N -r bench/sidekiq/worker.rb`` against redis_url, logging to a file."""
    sidekiq = shutil.which("sidekiq")
    assert sidekiq is not None
    env = app_env(REDIS_URL=redis_url, HIGHLIGHTER_URL=highlighter_url)
    return Child(name, ["-c", str(concurrency), "-t", str(SHUTDOWN_SECONDS), "-r",
                        str(WORKER_RB)], env, directory, program=sidekiq)


def measure_sidekiq(redis_url: str, highlighter_url: str, jobs: int, concurrency: int,
                    directory: Path) -> RunResult | None:
    """Sidekiq with ``-c concurrency`` draining ``jobs`` highlight jobs; None without Sidekiq.

    jobs/s runs from the stand-in's first request to its last answer (a Sidekiq job ends
    with its answer: there is nothing to store).
    """
    if not available():
        return None
    stand = StandIn(highlighter_url)
    logger.info("Sidekiq -c %d: pushing %d jobs", concurrency, jobs)
    push(redis_url, "PygmentsWorker", jobs)
    delay = float(stand.stats().get("delay", 0.0))
    name = f"sidekiq-{concurrency}-{time.monotonic_ns()}"
    seen = watch(lambda: start(redis_url, highlighter_url, concurrency, directory, name),
                 READY, stand, jobs, lambda stats: int(stats["answered"]),
                 timeout_for(jobs, concurrency, delay or 1.0))
    if seen.progress < jobs:
        logger.warning("Sidekiq -c %d: %d of %d jobs answered by the deadline", concurrency,
                       seen.progress, jobs)
    return RunResult(
        name="Sidekiq", concurrency=concurrency, jobs=jobs, done=seen.progress,
        seconds=seen.stand_in_seconds, cpu_seconds=seen.cpu_seconds, peak_rss=seen.peak_rss,
        peak_in_flight=int(seen.stats["peak_in_flight"]), stand_in_cpu=seen.stand_in_cpu,
        stand_in_seconds=seen.stand_in_seconds, delay=delay,
        failed=seen.child.log().count("Job raised exception"),
    )


def measure_noop(redis_url: str, jobs: int, concurrency: int,
                 directory: Path) -> tuple[float, float] | None:
    """Sidekiq draining ``jobs`` no-op jobs: (jobs/s, CPU µs per job); None without Sidekiq.

    From its ready line until the queue is empty: the last few jobs (at most
    ``concurrency``) are then fetched and end within microseconds.
    """
    if not available():
        return None
    push(redis_url, "NoopWorker", jobs)
    client = redis.Redis.from_url(redis_url)
    child = start(redis_url, "http://127.0.0.1:9/", concurrency, directory,
                  f"sidekiq-noop-{time.monotonic_ns()}")
    try:
        child.wait_for_log(READY, timeout=60)
        started, cpu_start = time.perf_counter(), cpu_seconds(child.pid)
        deadline = started + 30 + jobs / 500
        while _queued(client) and time.perf_counter() < deadline:
            time.sleep(0.002)
        wall = time.perf_counter() - started
        cpu = cpu_seconds(child.pid) - cpu_start
        left = _queued(client)
    finally:
        child.stop()
        client.close()
    if left:
        logger.warning("Sidekiq no-op: %d of %d jobs left at the deadline", left, jobs)
    return (jobs - left) / wall, 1e6 * cpu / max(jobs - left, 1)


def _queued(client: redis.Redis) -> int:
    """Jobs still in Sidekiq's queue (redis-py's sync client, typed for both kinds)."""
    return cast(int, client.llen(QUEUE))


def table(results: list[RunResult]) -> Table:
    out = Table("Sidekiq 6.4 reference: bench/sidekiq/worker.rb against bench.slow_highlighter",
                ["-c", "jobs", "jobs/s", "CPU us/job", "peak RSS MB", "peak in flight",
                 "stand-in CPU %"])
    for r in results:
        out.add(r.concurrency, r.jobs, r.jobs_per_s, r.cpu_us_per_job, mb(r.peak_rss),
                r.peak_in_flight, r.stand_in_cpu_percent)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[200, 1_000])
    parser.add_argument("--delay", type=float, default=0.1, help="the stand-in's delay, s")
    args = parser.parse_args(argv)
    setup("sidekiq")
    if not available():
        print(SKIPPED)
        return
    results: list[RunResult] = []
    with work_dir("sidekiq") as directory, private_valkey(directory) as redis_url, \
            stand_in(directory, args.delay) as stand:
        for concurrency in args.concurrency:
            result = measure_sidekiq(redis_url, stand.url, args.jobs, concurrency, directory)
            assert result is not None
            results.append(result)
            logger.info("Sidekiq -c %d: %.0f jobs/s", concurrency, result.jobs_per_s)
    table(results).print()
    if any(math.isnan(r.jobs_per_s) for r in results):
        raise SystemExit("a Sidekiq run finished no job")


if __name__ == "__main__":
    main()
