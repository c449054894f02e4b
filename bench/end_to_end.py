"""Time from POST to highlighted code, on the full stack: ``python -m bench.end_to_end``.

Starts a private Valkey, our Pygments highlighter (``python -m snippet_service.highlighter``),
the real ``run_worker.py`` and the real ``run_web.py``, the way ``tests.servers.Stack`` does,
with default settings otherwise. At each rate, a new snippet is
submitted every 1/rate seconds, each as a browser would: POST /snippets (the form, with the
CSRF token a GET / handed out once, its cookie and ``Sec-Fetch-Site: same-origin``; 303 to
the page), then the live-update stream GET /snippets/{id}/events that the page's script
opens. Latency runs from the start of the POST to the arrival of ``event: done`` whose data
says ``highlighted``. (The browser's GET of the page itself, between the two, is left out.)
The rate limit is set too high to trip; the limiter still counts each POST in Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.common import (
    NO_RATE_LIMITS,
    Child,
    Table,
    app_env,
    percentile,
    private_valkey,
    run,
    setup,
    target_line,
    work_dir,
)
from snippet_service.valkey import free_port
from snippet_service.web.csrf import COOKIE_NAME, FIELD_NAME

logger = logging.getLogger("bench.end_to_end")

RATES = ((20, 10.0), (200, 5.0))  # (snippets/s, seconds)
WARM_UP = 10
SNIPPET_TIMEOUT = 30.0
# rate -> (p50, p99) limits in ms
TARGETS_MS = {20: (50, 250), 200: (100, 500)}
CODE = '''import dataclasses


@dataclasses.dataclass
class Point:
    """A point on the plane, number {number}."""

    x: float
    y: float

    def norm(self) -> float:
        return (self.x ** 2 + self.y ** 2) ** 0.5
'''


@dataclass
class RateResult:
    rate: int
    seconds: float
    submitted: int = 0
    sent_seconds: float = 0.0
    started: float = 0.0
    last_done: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, reason: str) -> None:
        self.failures[reason] = self.failures.get(reason, 0) + 1


async def form_token(session: aiohttp.ClientSession, base_url: str) -> str:
    """GET / as a browser first would: the CSRF token is the cookie's value."""
    async with session.get(f"{base_url}/") as response:
        await response.read()
        if response.status != 200 or COOKIE_NAME not in response.cookies:
            raise RuntimeError(f"GET / answered {response.status} without a token cookie")
        return response.cookies[COOKIE_NAME].value


async def one_snippet(session: aiohttp.ClientSession, base_url: str, token: str,
                      number: int) -> float:
    """POST the form, follow the page's event stream to ``done``; seconds taken."""
    started = time.perf_counter()
    form = {FIELD_NAME: token, "language": "python", "expires_in": "never",
            "plain_code": CODE.replace("{number}", str(number))}
    headers = {"Cookie": f"{COOKIE_NAME}={token}", "Origin": base_url,
               "Sec-Fetch-Site": "same-origin"}
    async with session.post(f"{base_url}/snippets", data=form, headers=headers,
                            allow_redirects=False) as response:
        await response.read()
        if response.status != 303:
            raise RuntimeError(f"POST /snippets answered {response.status}")
        location = response.headers["Location"]
    async with session.get(f"{base_url}{location}/events") as response:
        if response.status != 200:
            raise RuntimeError(f"GET events answered {response.status}")
        event = ""
        async for raw in response.content:
            line = raw.decode().rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "done":
                status = json.loads(line[5:])["status"]
                if status != "highlighted":
                    raise RuntimeError(f"snippet {status}")
                return time.perf_counter() - started
    raise RuntimeError("stream ended without done")


async def timed(session: aiohttp.ClientSession, base_url: str, token: str, number: int,
                result: RateResult) -> None:
    try:
        latency = await asyncio.wait_for(one_snippet(session, base_url, token, number),
                                         SNIPPET_TIMEOUT)
    except TimeoutError:
        result.fail("timeout")
    except (aiohttp.ClientError, RuntimeError, KeyError, ValueError) as exc:
        result.fail(str(exc)[:60] or type(exc).__name__)
    else:
        result.latencies.append(latency)
        result.last_done = max(result.last_done, time.perf_counter())


async def at_rate(base_url: str, rate: int, seconds: float, first: int) -> RateResult:
    """Submit rate*seconds snippets on an open-loop schedule and wait for all of them."""
    result = RateResult(rate, seconds)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=SNIPPET_TIMEOUT + 5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        token = await form_token(session, base_url)
        if first == 0:  # warm-up: templates, connections, the highlighter's processes
            for number in range(WARM_UP):
                await timed(session, base_url, token, -1 - number, RateResult(0, 0))
        loop = asyncio.get_running_loop()
        tasks = []
        start = loop.time()
        result.started = time.perf_counter()
        for index in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + index / rate - loop.time()))
            tasks.append(asyncio.create_task(
                timed(session, base_url, token, first + index, result)))
        result.sent_seconds = loop.time() - start
        result.submitted = len(tasks)
        await asyncio.gather(*tasks)
    return result


def benchmark(directory: Path, database: Mapping[str, str] | None = None) -> list[RateResult]:
    """Every rate of RATES on one stack; ``database`` names its database (default: a new
    SQLite file in ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    results = []
    children: list[Child] = []
    with private_valkey(directory) as redis_url:
        try:
            port, highlighter_port = free_port(), free_port()
            env = app_env(REDIS_URL=redis_url,
                          **(database or {"SNIPPETS_DB": str(directory / "snippets.db")}),
                          PORT=str(port), HIGHLIGHTER_PORT=str(highlighter_port),
                          **NO_RATE_LIMITS,
                          HIGHLIGHTER_URL=f"http://127.0.0.1:{highlighter_port}/")
            children.append(Child("highlighter", ["-m", "snippet_service.highlighter"], env,
                                  directory))
            children[-1].wait_for_port(highlighter_port)
            children.append(Child("web", ["run_web.py"], env, directory))
            children[-1].wait_for_port(port)
            children.append(Child("worker", ["run_worker.py"], env, directory))
            children[-1].wait_for_log("Starting worker")
            first = 0
            for rate, seconds in RATES:
                logger.info("%d snippets/s for %.0fs", rate, seconds)
                results.append(run(at_rate(f"http://127.0.0.1:{port}", rate, seconds, first)))
                first += int(rate * seconds)
        finally:
            for child in reversed(children):
                child.stop()
    return results


def report(results: list[RateResult]) -> Table:
    table = Table(
        "end to end: POST /snippets -> event: done (highlighted), full stack",
        ["rate/s", "snippets", "sent in s", "highlighted", "done/s", "failed", "p50 ms",
         "p95 ms", "p99 ms", "max ms"],
    )
    table.notes.append("done/s: highlighted snippets over the time from the first POST to the"
                       " last done event; below the rate means the stack could not keep up.")
    for r in results:
        ms = [1000 * value for value in r.latencies]
        span = r.last_done - r.started
        table.add(r.rate, r.submitted, r.sent_seconds, len(ms),
                  len(ms) / span if span > 0 else float("nan"), sum(r.failures.values()),
                  percentile(ms, 50), percentile(ms, 95), percentile(ms, 99),
                  max(ms, default=float("nan")))
        for reason, count in r.failures.items():
            table.notes.append(f"  at {r.rate}/s: {count} x {reason}")
    for r in results:
        limits = TARGETS_MS.get(r.rate)
        if limits is None:
            continue
        ms = [1000 * value for value in r.latencies]
        complete = not r.failures and len(ms) == r.submitted
        for pct, limit in zip((50, 99), limits, strict=True):
            value = percentile(ms, pct)
            table.notes.append(target_line(
                f"at {r.rate}/s p{pct} <= {limit} ms", value <= limit and complete,
                f"{value:.0f} ms" + ("" if complete else " (not every snippet finished)")))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    setup("end_to_end")
    with work_dir("end-to-end") as directory:
        results = benchmark(directory)
    report(results).print()


if __name__ == "__main__":
    main()
