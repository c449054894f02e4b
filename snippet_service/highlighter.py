"""Our Pygments-backed highlighting web service, speaking pygments.appspot.com's form API.

``POST /`` with form fields ``lang`` and ``code`` answers an HTML fragment; with
``format=ansi`` it answers the code coloured for a 256-colour terminal instead (text/plain,
the code's own control characters shown as symbols, never sent to the terminal);
``GET /languages`` lists the languages; ``GET /style.css`` serves the stylesheet
(``?style=NAME`` for another Pygments style; 404 for an unknown one). Run it with
``snippet-service-highlighter`` or ``python -m snippet_service.highlighter``; SIGINT or
SIGTERM stops it within SHUTDOWN_SECONDS, render processes included.

Every render runs in a pool of processes with a deadline (``HIGHLIGHT_RENDER_SECONDS``):
a render past it has its process killed and is answered 422 "too slow to highlight", a
final answer. At most ``HIGHLIGHTER_QUEUE`` renders wait for a process; past that the
answer is 503 with ``Retry-After``. A client that hangs up cancels its render.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import AsyncIterator
from functools import lru_cache

from aiohttp import web
from pygments import highlight
from pygments.formatters import HtmlFormatter, Terminal256Formatter
from pygments.lexers import get_all_lexers, get_lexer_by_name
from pygments.styles import get_all_styles
from pygments.util import ClassNotFound

from snippet_service.config import Config, ConfigError
from snippet_service.controls import CONTROL_PICTURES
from snippet_service.logs import setup_logging
from snippet_service.renderpool import PoolBusy, RenderFailed, RenderPool, RenderTimeout

logger = logging.getLogger("snippet_service.highlighter")

STYLE = "default"
CSS_CLASS = "highlight"
POOL = web.AppKey("render_pool", RenderPool)
MAX_CODE = web.AppKey("max_code", int)
TOO_SLOW = "too slow to highlight"
SHUTDOWN_SECONDS = 2.0
HTML, ANSI = "html", "ansi"  # the answers POST / makes (form field ``format``)


@lru_cache(maxsize=1)
def languages() -> list[dict[str, object]]:
    """Every language Pygments knows, with the aliases that select it, sorted by name."""
    found = [
        {"name": name, "aliases": list(aliases)}
        for name, aliases, _patterns, _mimetypes in get_all_lexers()
        if aliases
    ]
    return sorted(found, key=lambda item: str(item["name"]).lower())


@lru_cache(maxsize=1)
def known_aliases() -> frozenset[str]:
    """Every alias that names a language."""
    return frozenset(alias for item in languages() for alias in item["aliases"])  # type: ignore[attr-defined]


def render(lang: str, code: str) -> str:
    """Highlight code as an HTML fragment with CSS classes (runs in a worker process)."""
    lexer = get_lexer_by_name(lang, stripnl=False, ensurenl=True)
    return str(highlight(code, lexer, HtmlFormatter(cssclass=CSS_CLASS, style=STYLE)))


def render_ansi(lang: str, code: str) -> str:
    """Highlight code with 256-colour terminal escapes (runs in a worker process)."""
    lexer = get_lexer_by_name(lang, stripnl=False, ensurenl=True)
    return str(highlight(code.translate(CONTROL_PICTURES), lexer,
                         Terminal256Formatter(style=STYLE)))


@lru_cache(maxsize=1)
def style_names() -> frozenset[str]:
    """The Pygments styles a stylesheet may be asked for."""
    return frozenset(get_all_styles())


@lru_cache(maxsize=64)
def stylesheet(style: str = STYLE) -> str:
    """The CSS matching the fragments' classes, in one of ``style_names()``."""
    return str(HtmlFormatter(cssclass=CSS_CLASS, style=style).get_style_defs(f".{CSS_CLASS}"))


async def highlight_view(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the form is not valid UTF-8") from None
    lang, code, answer = form.get("lang"), form.get("code"), form.get("format")
    variant = None  # the main render: HTML
    if answer is not None and answer != HTML:
        if answer != ANSI:
            raise web.HTTPBadRequest(text=f"unknown format {str(answer)[:40]!r}: "
                                     f"the form field 'format' is {HTML!r} or {ANSI!r}")
        variant = ANSI
    if not isinstance(lang, str) or not lang.strip():
        raise web.HTTPBadRequest(text="the form field 'lang' is required")
    if not isinstance(code, str):
        raise web.HTTPBadRequest(text="the form field 'code' is required")
    if len(code.encode()) > request.app[MAX_CODE]:
        raise web.HTTPRequestEntityTooLarge(
            max_size=request.app[MAX_CODE], actual_size=len(code.encode())
        )
    lang = lang.strip().lower()
    if lang not in known_aliases():
        raise web.HTTPBadRequest(text=f"unknown language {lang!r}")
    pool = request.app[POOL]
    try:
        text = await pool.render(lang, code, variant)
    except RenderTimeout:
        logger.warning("render of %d bytes of %s stopped after %gs", len(code), lang,
                       pool.seconds)
        raise web.HTTPUnprocessableEntity(
            text=f"{TOO_SLOW} (over {pool.seconds:g} s)") from None
    except PoolBusy:
        raise web.HTTPServiceUnavailable(
            text="the highlighter is busy; try again later",
            headers={"Retry-After": str(max(1, math.ceil(pool.seconds)))},
        ) from None
    except RenderFailed as exc:
        if exc.kind == ClassNotFound.__name__:
            raise web.HTTPBadRequest(text=f"unknown language {lang!r}") from None
        logger.warning("render of %s failed: %s: %s", lang, exc.kind, exc)
        raise web.HTTPUnprocessableEntity(text=f"could not highlight: {exc.kind}") from None
    if variant == ANSI:
        return web.Response(text=text, content_type="text/plain", charset="utf-8")
    return web.Response(text=text, content_type="text/html")


async def languages_view(request: web.Request) -> web.Response:
    return web.json_response(languages())


async def style_view(request: web.Request) -> web.Response:
    style = request.query.get("style", STYLE)
    if style not in style_names():
        raise web.HTTPNotFound(text=f"unknown style {style!r}")
    return web.Response(text=stylesheet(style), content_type="text/css")


def create_app(
    max_code_bytes: int = 512 * 1024,
    processes: int | None = None,
    render_seconds: float = 5.0,
    max_waiting: int = 32,
) -> web.Application:
    """The highlighter app; Pygments runs in a pool of processes, each render with a
    deadline of ``render_seconds``, at most ``max_waiting`` renders waiting."""
    app = web.Application(client_max_size=max_code_bytes * 4 + 64 * 1024)
    app[MAX_CODE] = max_code_bytes

    async def pool_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = RenderPool(render, processes or os.cpu_count() or 1, render_seconds,
                          max_waiting, preload=("snippet_service.highlighter",),
                          variants={ANSI: render_ansi})
        try:
            await pool.start()
            app[POOL] = pool
            yield
        finally:
            await pool.close()

    app.cleanup_ctx.append(pool_ctx)
    app.router.add_post("/", highlight_view, name="highlight")
    app.router.add_get("/languages", languages_view, name="languages")
    app.router.add_get("/style.css", style_view, name="style")
    return app


def main() -> None:
    """Run the highlighter with the configuration from the environment."""
    setup_logging()
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    app = create_app(config.max_snippet_bytes, render_seconds=config.highlight_render_seconds,
                     max_waiting=config.highlighter_queue)
    web.run_app(
        app,
        host=config.highlighter_host,
        port=config.highlighter_port,
        handler_cancellation=True,  # a client that hangs up frees its render process
        shutdown_timeout=SHUTDOWN_SECONDS,  # then renders still running are cut short
        print=lambda _: logger.info(
            "highlighter listening on http://%s:%d/", config.highlighter_host,
            config.highlighter_port
        ),
    )


if __name__ == "__main__":
    # Run as the importable module, so that render processes find ``render`` by its name.
    # They need nothing from this main module, so hide it from multiprocessing, which
    # would otherwise run it again in each of them (with a RuntimeWarning for ``-m``).
    __spec__ = None  # type: ignore[assignment]
    del __file__
    from snippet_service.highlighter import main as module_main

    module_main()
