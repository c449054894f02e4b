"""The web app factory: wires config, resources, routes and templates."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiohttp_jinja2
import jinja2
from aiohttp import web

from snippet_service.config import Config
from snippet_service.db import database_ctx
from snippet_service.queue import redis_ctx
from snippet_service.snippets import Intake
from snippet_service.web.cache import PageCache
from snippet_service.web.csrf import check_csrf, set_csrf_cookie, template_csrf_token
from snippet_service.web.dashboard import setup_dashboard
from snippet_service.web.dashboard.access import check_dashboard_access
from snippet_service.web.events import DoneListener, StreamSlots
from snippet_service.web.forms import max_body_bytes
from snippet_service.web.hits import HitCounter
from snippet_service.web.languages import (
    START_WAIT_SECONDS,
    Languages,
    keep_asking,
)
from snippet_service.web.metrics import count_requests, setup_metrics
from snippet_service.web.middlewares import (
    check_body,
    errors,
    guard,
    security_headers,
    template_csp_nonce,
)
from snippet_service.web.ratelimit import check_rate_limit
from snippet_service.web.routes import setup_routes
from snippet_service.web.stylesheet import DARK_STYLE, DARK_STYLES, STYLE_CHOICES, Stylesheet
from snippet_service.web.throttle import BytesInFlight
from snippet_service.web.typedefs import (
    BODIES,
    CONFIG,
    DB,
    DONE,
    HITS,
    HTTP,
    INTAKE,
    LANGUAGES,
    PAGES,
    REDIS,
    STREAMS,
    STYLESHEET,
)

logger = logging.getLogger("snippet_service.web.app")

# Shipped inside the package; loaded through PackageLoader (this path is for the tests).
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"



async def database(app: web.Application) -> AsyncIterator[None]:
    async with database_ctx(app[CONFIG]) as app[DB]:
        yield


async def redis(app: web.Application) -> AsyncIterator[None]:
    async with redis_ctx(app[CONFIG]) as pool:
        app[REDIS] = pool
        intake = app[INTAKE] = Intake(app[DB], pool, app[CONFIG].queue_name)
        app[HITS] = HitCounter(pool)
        yield
        await intake.close()


async def http_ctx(app: web.Application) -> AsyncIterator[None]:
    """One client session for the web app's own calls to the highlighter."""
    timeout = aiohttp.ClientTimeout(total=10, connect=5)
    connector = aiohttp.TCPConnector(limit=10, keepalive_timeout=30)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        app[HTTP] = session
        yield


async def highlighter_info_ctx(app: web.Application) -> AsyncIterator[None]:
    """The highlighter's languages and stylesheet: waited for a few seconds at start, then
    asked for in the background until they arrive (see web/languages.py)."""
    session, url = app[HTTP], app[CONFIG].highlighter_url
    languages = app[LANGUAGES] = Languages()
    stylesheet = app[STYLESHEET] = Stylesheet(session, url)
    task = asyncio.create_task(
        _ask_highlighter(languages, stylesheet, session, url))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), START_WAIT_SECONDS)
    if not task.done():
        logger.warning("the highlighter at %s has not answered yet; starting without its "
                       "languages; using the installed Pygments' list until they arrive", url)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _ask_highlighter(languages: Languages, stylesheet: Stylesheet,
                           session: aiohttp.ClientSession, url: str) -> None:
    await keep_asking(languages, session, url)
    await stylesheet.refresh()  # kept for /highlight.css (fetched again when asked for)


async def done_listener_ctx(app: web.Application) -> AsyncIterator[None]:
    app[PAGES] = PageCache()
    listener = DoneListener(app[REDIS], app[PAGES])
    app[DONE] = listener
    task = asyncio.create_task(listener.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(config: Config) -> web.Application:
    """Build the web app for this configuration."""
    app = web.Application(
        middlewares=[
            count_requests,
            errors,
            guard(check_dashboard_access, check_csrf, check_rate_limit,
                  check_body),
        ],
        client_max_size=max_body_bytes(config.max_snippet_bytes),
    )
    app[CONFIG] = config
    app[BODIES] = BytesInFlight(config.body_bytes_in_flight_per_client)
    app[STREAMS] = StreamSlots(config.event_streams_per_client, config.event_streams_total)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("snippet_service", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        auto_reload=False,
    )
    aiohttp_jinja2.get_env(app).globals.update(
        csrf_token=template_csrf_token, csp_nonce=template_csp_nonce,
        style_choices=STYLE_CHOICES, dark_style=DARK_STYLE, dark_styles=DARK_STYLES,
    )
    app.on_response_prepare.extend([security_headers, set_csrf_cookie])
    app.cleanup_ctx.extend([database, redis, http_ctx, highlighter_info_ctx,
                             done_listener_ctx])
    setup_routes(app)
    setup_dashboard(app)
    setup_metrics(app)
    return app
