"""The web process: ``snippet-service-web``, ``python -m snippet_service.web.server`` or
``python run_web.py``.

SIGINT or SIGTERM (Ctrl-C sends SIGINT to the whole process group, and ``make run`` then
sends SIGTERM too) stops it: the listening socket closes, requests in progress get
SHUTDOWN_SECONDS to finish (live-update streams and other long requests are then
cancelled), and the app's resources close. Further signals while it stops change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import uvloop
from aiohttp import web

from snippet_service.config import Config, ConfigError
from snippet_service.logs import setup_logging
from snippet_service.queue import RedisRefused
from snippet_service.web.app import create_app
from snippet_service.web.middlewares import (
    RequestIdAccessLogger,
    hide_server_version,
    quiet_malformed_requests,
)

logger = logging.getLogger("snippet_service.web.server")

SHUTDOWN_SECONDS = 2.0


async def serve(config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then stop within a few seconds."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # The access log costs a line per request: off unless ACCESS_LOG asks for it.
    access_log = logging.getLogger("aiohttp.access") if config.access_log else None
    runner = web.AppRunner(create_app(config), access_log=access_log,
                           access_log_class=RequestIdAccessLogger,
                           shutdown_timeout=SHUTDOWN_SECONDS)
    try:
        await runner.setup()  # a failed start still closes what it had opened
        await web.TCPSite(runner, config.host, config.port).start()
        logger.info("web app listening on http://%s:%d/", config.host, config.port)
        await stop.wait()
        logger.info("stopping")
    finally:
        await runner.cleanup()
    logger.info("stopped")


def main() -> None:
    """Run one web process (uvloop) with the configuration from the environment."""
    setup_logging()
    quiet_malformed_requests()
    hide_server_version()
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    try:
        uvloop.run(serve(config))
    except RedisRefused as exc:  # a wrong password, an untrusted certificate
        raise SystemExit(f"cannot start: {exc}") from None


if __name__ == "__main__":
    main()
