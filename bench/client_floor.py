"""The CPU of the worker's HTTP call on its own: ``python -m bench.client_floor``.

A child process opens one ``aiohttp.ClientSession`` the way the worker does
(``tasks.client.client_session``: keep-alive, connection limit = concurrency) and
makes CALLS calls of ``tasks.client.highlight`` (the form POST of lang and code,
the body read and checked) to the stand-in highlighter, CONCURRENCY at a time, on uvloop.
It reports its own CPU (user + system) per call and the calls per second. No worker can
spend less CPU per highlight job than this, so ``bench.highlight`` divides the worker's CPU
per job by it.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from bench.common import Child, Table, app_env, run, setup, work_dir
from bench.slow_highlighter import stand_in
from tasks.client import client_session, highlight

logger = logging.getLogger("bench.client_floor")

CALLS, CONCURRENCY = 5_000, 200
_runs = itertools.count(1)
CODE = "def f(n):\n    return [i * i for i in range(n)]  # snippet {}\n"


@dataclass
class Floor:
    """One session's calls: how fast, and the CPU each took."""

    calls: int
    concurrency: int
    seconds: float
    cpu_seconds: float

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else math.nan

    @property
    def cpu_us_per_call(self) -> float:
        return 1e6 * self.cpu_seconds / self.calls if self.calls else math.nan


async def calls(url: str, count: int, concurrency: int) -> Floor:
    """``count`` highlight calls through one session, ``concurrency`` at a time."""
    numbers = iter(range(count))
    async with client_session(limit=concurrency) as session:
        await highlight(session, url, "python", CODE.format(-1))  # connect, warm up

        async def caller() -> None:
            for number in numbers:
                await highlight(session, url, "python", CODE.format(number))

        started, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return Floor(count, concurrency, time.perf_counter() - started,
                     time.process_time() - cpu_start)


def measure_floor(url: str, count: int, concurrency: int, directory: Path) -> Floor:
    """Run :func:`calls` in a child process against the stand-in at url."""
    child = Child(f"client-floor-{concurrency}-{next(_runs)}",
                  ["-m", "bench.client_floor", "--child", url, "--calls", str(count),
                   "--concurrency", str(concurrency)], app_env(), directory)
    try:
        code = child.popen.wait(60 + count / 100)
    finally:
        child.stop()
    lines = child.log().strip().splitlines()
    if code != 0 or not lines:
        raise RuntimeError(f"client floor failed ({code}):\n{child.log()[-3000:]}")
    values = json.loads(lines[-1])
    return Floor(int(values["calls"]), int(values["concurrency"]), float(values["seconds"]),
                 float(values["cpu_seconds"]))


def table(floors: list[Floor]) -> Table:
    out = Table("client floor: one aiohttp ClientSession calling bench.slow_highlighter",
                ["concurrency", "calls", "calls/s", "CPU us/call"])
    for floor in floors:
        out.add(floor.concurrency, floor.calls, floor.calls_per_s, floor.cpu_us_per_call)
    out.notes.append("CPU: the calling process's user + system time over the calls"
                     " (tasks.client.highlight, uvloop).")
    return out


def child_main(url: str, count: int, concurrency: int) -> None:
    floor = run(calls(url, count, concurrency))
    print(json.dumps({"calls": floor.calls, "concurrency": floor.concurrency,
                      "seconds": floor.seconds, "cpu_seconds": floor.cpu_seconds}), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[CONCURRENCY])
    parser.add_argument("--delay", type=float, default=0.1, help="the stand-in's delay, s")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, args.calls, args.concurrency[0])
        return
    setup("client_floor")
    floors = []
    with work_dir("client-floor") as directory, stand_in(directory, args.delay) as stand:
        for concurrency in args.concurrency:
            floors.append(measure_floor(stand.url, args.calls, concurrency, directory))
            logger.info("concurrency %d: %.0f us/call", concurrency, floors[-1].cpu_us_per_call)
    table(floors).print()


if __name__ == "__main__":
    main()
