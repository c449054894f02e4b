"""A stand-in highlighter that answers after a fixed delay: ``python -m bench.slow_highlighter PORT
[DELAY]``.

``POST /`` reads the form body, waits DELAY seconds (0.1 by default) and answers a small
Pygments-like HTML fragment as text/html. ``GET /stats`` reports, as JSON, the wall-clock
time (``time.time()``) of the first and last request, how many were answered and the peak
number in flight. ``GET /languages`` lists Python, for a web app that asks.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import uvloop
from aiohttp import web

FRAGMENT = (
    '<div class="highlight"><pre><span></span><span class="k">def</span> <span class="nf">f'
    '</span><span class="p">():</span>\n    <span class="k">return</span> <span class="mi">1'
    "</span>\n</pre></div>\n"
)
DELAY = web.AppKey("delay", float)
STATS = web.AppKey("stats", dict)


async def highlight(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    stats["first"] = stats["first"] or time.time()
    stats["in_flight"] += 1
    stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
    try:
        await request.read()
        await asyncio.sleep(request.app[DELAY])
    finally:
        stats["in_flight"] -= 1
    stats["answered"] += 1
    stats["last"] = time.time()
    return web.Response(text=FRAGMENT, content_type="text/html")


async def stats_view(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATS])


async def languages(request: web.Request) -> web.Response:
    return web.json_response([{"name": "Python", "aliases": ["python", "py"]}])


def create_app(delay: float) -> web.Application:
    app = web.Application()
    app[DELAY] = delay
    app[STATS] = {"first": 0.0, "last": 0.0, "answered": 0, "in_flight": 0, "peak_in_flight": 0}
    app.router.add_post("/", highlight)
    app.router.add_get("/stats", stats_view)
    app.router.add_get("/languages", languages)
    return app


def main() -> None:
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
    sock = socket.create_server(("127.0.0.1", port), backlog=4096)
    web.run_app(create_app(delay), sock=sock, print=None, access_log=None,
                loop=uvloop.new_event_loop(), backlog=4096)


if __name__ == "__main__":
    main()
