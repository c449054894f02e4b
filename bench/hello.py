"""The baseline: a bare aiohttp hello-world app on uvloop: ``python -m bench.hello PORT``."""

from __future__ import annotations

import sys

import uvloop
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Hello, World!")


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


def main() -> None:
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None, loop=uvloop.new_event_loop(), backlog=4096)


if __name__ == "__main__":
    main()
