"""One worker process draining queued jobs against the stand-in highlighter: what every
worker of ``bench.highlight`` (ours, plain arq, Sidekiq) is measured with, the same way.

The jobs are queued before the worker starts. :func:`watch` resets the stand-in's counters,
starts the worker, samples its process tree's RSS every 50 ms from spawn to the end, and
counts its CPU (user + system of the tree, from /proc through psutil) from the moment it
logs that it is ready until every job is done.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.common import Child, RssSampler, cpu_seconds
from bench.slow_highlighter import StandIn

POLL_SECONDS = 0.05


@dataclass
class RunResult:
    """One worker's run: throughput, CPU, memory and what the stand-in saw."""

    name: str
    concurrency: int
    jobs: int
    done: int
    seconds: float  # the stand-in's first request to the last job's end
    cpu_seconds: float  # the worker's process tree, from ready to done
    peak_rss: int
    peak_in_flight: int
    stand_in_cpu: float  # the stand-in's CPU seconds over the run
    stand_in_seconds: float  # the stand-in's first request to its last answer
    delay: float
    processes: int = 1
    failed: int = 0
    retries: int = 0
    remarks: list[str] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_us_per_job(self) -> float:
        return 1e6 * self.cpu_seconds / self.done if self.done else math.nan

    @property
    def stand_in_cpu_percent(self) -> float:
        """Of one core, while it served the run."""
        if self.stand_in_seconds <= 0:
            return math.nan
        return 100 * self.stand_in_cpu / self.stand_in_seconds


@dataclass
class Watched:
    """What :func:`watch` saw."""

    child: Child
    stats: dict[str, Any]  # the stand-in's counters at the end
    progress: int
    cpu_seconds: float
    peak_rss: int
    stand_in_cpu: float

    @property
    def stand_in_seconds(self) -> float:
        first, last = float(self.stats["first"]), float(self.stats["last"])
        return last - first if first else 0.0


def watch(
    start: Callable[[], Child],
    ready: str,
    stand_in: StandIn,
    jobs: int,
    progress: Callable[[dict[str, Any]], int],
    timeout: float,
    ready_count: int = 1,
) -> Watched:
    """Run one worker until ``progress(stand-in stats)`` reaches ``jobs`` (or the timeout).

    :param start: spawns the worker, whose jobs are already queued
    :param ready: the log line the worker writes once it takes jobs (``ready_count`` times)
    """
    before = stand_in.reset()
    child = start()
    try:
        with RssSampler(child.pid) as sampler:
            child.wait_for_log(ready, timeout=60, count=ready_count)
            cpu_start = cpu_seconds(child.pid)
            deadline = time.monotonic() + timeout
            while True:
                stats = stand_in.stats()
                done = progress(stats)
                if done >= jobs or time.monotonic() > deadline:
                    break
                if child.popen.poll() is not None:
                    raise RuntimeError(f"{child.name} exited:\n{child.log()[-3000:]}")
                time.sleep(POLL_SECONDS)
            cpu = cpu_seconds(child.pid) - cpu_start
        stats = stand_in.stats()
    finally:
        child.stop()
    return Watched(child=child, stats=stats, progress=done, cpu_seconds=cpu,
                   peak_rss=sampler.peak,
                   stand_in_cpu=float(stats["cpu_seconds"]) - float(before["cpu_seconds"]))


def timeout_for(jobs: int, concurrency: int, delay: float) -> float:
    """A generous deadline: 50 jobs/s at worst, and every wave of ``concurrency`` twice."""
    return 30 + jobs / 50 + 2 * delay * math.ceil(jobs / concurrency)
