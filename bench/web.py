"""Requests/s of the real web app against a bare aiohttp hello-world: ``python -m bench.web``.

Starts a private Valkey, ``bench.slow_highlighter`` (only for the web app's language list),
the real ``run_web.py`` on a SQLite file seeded with highlighted snippets, and ``bench.hello``
(aiohttp + uvloop answering "Hello, World!"). No worker runs: POST /api/snippets stores and
enqueues, and the jobs wait in the queue; the rate limit is set too high to trip (the
limiter still counts each POST in Redis). Each endpoint gets the same load generator
(``bench.loadgen``: N keep-alive connections, one request in flight each) for a fixed
duration, after a short warm-up; the ratio is to hello-world measured in the same run.
Server CPU % is the server process's CPU time over the run (100 % = one core).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    NO_RATE_LIMITS,
    Child,
    Table,
    app_env,
    private_valkey,
    run,
    setup,
    target_line,
    work_dir,
)
from bench.loadgen import LoadResult, build_request, generate_load
from snippet_service import db, sqlite
from snippet_service.highlighter import render
from snippet_service.valkey import free_port
from tasks.sanitize import clean_html

logger = logging.getLogger("bench.web")

CONNECTIONS = 32
DURATION = 5.0
WARM_UP = 0.5
SEED_SNIPPETS = 50
TARGET_RATIOS = {"GET /snippets/{id}": 0.5, "POST /api/snippets": 0.25}
CODE = '''import asyncio


async def main(names: list[str]) -> None:
    """Greet everyone, one at a time."""
    for number, name in enumerate(names, start=1):
        print(f"{number:3d}: hello, {name}!")
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main(["ada", "grace", "linus"]))
'''


async def seed(db_path: Path, count: int) -> list[str]:
    """Highlighted snippets (rendered by Pygments and cleaned, as the worker stores them)."""
    database = sqlite.Database(db_path, 1)
    await database.open()
    html = clean_html(render("python", CODE))
    ids = []
    try:
        for _ in range(count):
            snippet = await db.create_snippet(database, "python", CODE)
            await db.mark_highlighted(database, snippet.id, snippet.revision, html)
            ids.append(snippet.id)
    finally:
        await database.close()
    return ids


def measure(name: str, port: int, pid: int, request: bytes | Callable[[], bytes],
            connections: int, duration: float) -> LoadResult:
    run(generate_load(port, request, connections, WARM_UP))
    logger.info("%s: %d connections for %.0fs", name, connections, duration)
    return run(generate_load(port, request, connections, duration, server_pid=pid))


def benchmark(directory: Path, connections: int, duration: float) -> Table:
    db_path = directory / "snippets.db"
    ids = run(seed(db_path, SEED_SNIPPETS))
    children: list[Child] = []
    with private_valkey(directory) as redis_url:
        try:
            highlighter_port, web_port, hello_port = free_port(), free_port(), free_port()
            highlighter = Child("languages", ["-m", "bench.slow_highlighter",
                                              str(highlighter_port)], app_env(), directory)
            children.append(highlighter)
            highlighter.wait_for_port(highlighter_port)
            web = Child("web", ["run_web.py"], app_env(
                REDIS_URL=redis_url, SNIPPETS_DB=str(db_path), PORT=str(web_port),
                **NO_RATE_LIMITS,
                HIGHLIGHTER_URL=f"http://127.0.0.1:{highlighter_port}/"), directory)
            children.append(web)
            hello = Child("hello", ["-m", "bench.hello", str(hello_port)], app_env(), directory)
            children.append(hello)
            web.wait_for_port(web_port)
            hello.wait_for_port(hello_port)

            cycle = itertools.cycle(ids)
            body = json.dumps({"language": "python", "code": CODE}).encode()
            cases: list[tuple[str, int, int, bytes | Callable[[], bytes]]] = [
                ("hello-world GET /", hello_port, hello.pid, build_request("GET", hello_port, "/")),
                ("GET /snippets/{id}", web_port, web.pid,
                 lambda: build_request("GET", web_port, f"/snippets/{next(cycle)}",
                                       accept="text/html")),
                ("GET /api/snippets/{id}", web_port, web.pid,
                 lambda: build_request("GET", web_port, f"/api/snippets/{next(cycle)}")),
                ("POST /api/snippets", web_port, web.pid,
                 build_request("POST", web_port, "/api/snippets", body, "application/json")),
            ]
            results = [(name, measure(name, port, pid, request, connections, duration))
                       for name, port, pid, request in cases]
        finally:
            for child in reversed(children):
                child.stop()
    return report(results, connections, duration)


def report(results: list[tuple[str, LoadResult]], connections: int, duration: float) -> Table:
    table = Table(
        f"web app requests/s: {connections} keep-alive connections, {duration:.0f} s each,"
        " bench.loadgen",
        ["endpoint", "requests", "req/s", "x hello-world", "2xx", "other status", "errors",
         "server CPU %", "client CPU %"],
    )
    baseline = results[0][1].rate
    for name, result in results:
        table.add(name, result.requests, result.rate,
                  f"{result.rate / baseline:.2f}x" if baseline else "-", result.ok,
                  result.requests - result.ok, result.errors, result.server_cpu,
                  result.client_cpu)
    by_name = dict(results)
    for name, target in TARGET_RATIOS.items():
        measured = by_name.get(name)
        if measured is None or not baseline:
            continue
        table.notes.append(target_line(
            f"{name} >= {target}x hello-world",
            measured.rate / baseline >= target and measured.ok == measured.requests,
            f"{measured.rate / baseline:.2f}x ({measured.rate:,.0f} vs {baseline:,.0f} req/s)",
        ))
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--duration", type=float, default=DURATION)
    args = parser.parse_args(argv)
    setup("web")
    with work_dir("web") as directory:
        table = benchmark(directory, args.connections, args.duration)
    table.print()


if __name__ == "__main__":
    main()
