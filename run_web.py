"""Start the web app: ``python run_web.py``."""

import logging

import uvloop
from aiohttp import web

from snippet_service.config import Config, ConfigError
from snippet_service.main import create_app
from snippet_service.middlewares import hide_server_version, quiet_malformed_requests


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_malformed_requests()
    hide_server_version()
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log=None,
        loop=uvloop.new_event_loop(),
        print=lambda _: logging.getLogger("snippet_service").info(
            "web app listening on http://%s:%d/", config.host, config.port
        ),
    )


if __name__ == "__main__":
    main()
