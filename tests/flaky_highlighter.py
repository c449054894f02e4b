"""An upstream that fails on purpose: `python -m tests.flaky_highlighter PORT`.

The language picks the failure; the code ``fail=N`` says how many requests for that code
fail before it answers 200. ``GET /log?code=…`` lists the times requests arrived;
``GET /counts?prefix=…`` counts the requests for each code starting with the prefix, and
``GET /in-flight`` gives how many requests it holds now and the peak since it started.

- ``err500`` answers 500; ``err503`` answers 503 with ``Retry-After: 1``; ``err429`` 429
- ``hang`` never answers (until the client gives up)
- ``slow`` answers after ``sleep=S`` seconds (every time)
- ``bad400`` always answers 400

An outage, for every language: ``POST /outage?on=1`` (``&mode=reset`` closes each connection
instead of answering 503) makes every highlight request and ``GET /languages`` fail until
``POST /outage?on=0``; ``GET /outage`` says whether it is on and counts the highlight
requests (``posts``) and ``/languages`` requests (``probes``) since it began.
"""

from __future__ import annotations

import asyncio
import html
import re
import sys
import time
from collections import defaultdict

from aiohttp import web

LANGUAGES = ["python", "err500", "err503", "err429", "hang", "slow", "bad400"]

log: defaultdict[str, list[float]] = defaultdict(list)
in_flight = {"now": 0, "peak": 0}
outage: dict[str, object] = {"on": False, "mode": "503", "started": None, "ended": None}
outage_calls = {"posts": 0, "probes": 0}


def _fail_for_outage(request: web.Request, counter: str) -> web.Response | None:
    """During an outage: count the request and fail it (503, or a closed connection)."""
    if not outage["on"]:
        return None
    outage_calls[counter] += 1
    if outage["mode"] == "reset" and request.transport is not None:
        request.transport.close()
    return web.Response(status=503, text="the highlighter is down")


def _number(code: str, name: str, default: float) -> float:
    match = re.search(rf"{name}=([0-9.]+)", code)
    return float(match.group(1)) if match else default


async def highlight(request: web.Request) -> web.Response:
    in_flight["now"] += 1
    in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
    try:
        return await answer(request)
    finally:
        in_flight["now"] -= 1


async def answer(request: web.Request) -> web.Response:
    form = await request.post()
    down = _fail_for_outage(request, "posts")
    if down is not None:
        return down
    lang, code = str(form.get("lang", "")), str(form.get("code", ""))
    log[code].append(time.time())
    failing = len(log[code]) <= _number(code, "fail", 0)
    if lang == "bad400":
        return web.Response(status=400, text="bad400 is never accepted")
    if failing and lang == "err500":
        return web.Response(status=500, text="upstream exploded")
    if failing and lang == "err503":
        return web.Response(status=503, text="busy", headers={"Retry-After": "1"})
    if failing and lang == "err429":
        return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
    if failing and lang == "hang":
        await asyncio.sleep(3600)
    if lang == "slow":
        await asyncio.sleep(_number(code, "sleep", 1))
    return web.Response(
        text=f'<div class="highlight"><pre><span class="ok">{html.escape(code)}</span></pre></div>',
        content_type="text/html",
    )


async def languages(request: web.Request) -> web.Response:
    down = _fail_for_outage(request, "probes")
    if down is not None:
        return down
    return web.json_response([{"name": name, "aliases": [name]} for name in LANGUAGES])


async def requests_log(request: web.Request) -> web.Response:
    return web.json_response(log.get(request.query.get("code", ""), []))


async def counts(request: web.Request) -> web.Response:
    prefix = request.query.get("prefix", "")
    return web.json_response({code: len(times) for code, times in log.items()
                              if code.startswith(prefix)})


async def in_flight_view(request: web.Request) -> web.Response:
    return web.json_response(in_flight)


async def outage_view(request: web.Request) -> web.Response:
    if request.method == "POST":
        on = request.query.get("on") == "1"
        if on and not outage["on"]:
            outage_calls.update(posts=0, probes=0)
            outage.update(started=time.time(), ended=None)
        elif not on and outage["on"]:
            outage["ended"] = time.time()
        outage["on"] = on
        outage["mode"] = request.query.get("mode", "503")
    return web.json_response({**outage, **outage_calls})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/", highlight)
    app.router.add_get("/languages", languages)
    app.router.add_get("/log", requests_log)
    app.router.add_get("/counts", counts)
    app.router.add_get("/in-flight", in_flight_view)
    app.router.add_route("*", "/outage", outage_view)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None,
                backlog=2048, access_log=None)
