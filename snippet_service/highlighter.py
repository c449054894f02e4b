"""Our Pygments-backed highlighting web service, speaking pygments.appspot.com's form API.

``POST /`` with form fields ``lang`` and ``code`` answers an HTML fragment;
``GET /languages`` lists the languages; ``GET /style.css`` serves the stylesheet.
Run it with ``python -m snippet_service.highlighter``.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache

from aiohttp import web
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_all_lexers, get_lexer_by_name
from pygments.util import ClassNotFound

from snippet_service.config import Config, ConfigError

logger = logging.getLogger("snippet_service.highlighter")

STYLE = "default"
CSS_CLASS = "highlight"
EXECUTOR = web.AppKey("executor", ProcessPoolExecutor)
MAX_CODE = web.AppKey("max_code", int)


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


@lru_cache(maxsize=1)
def stylesheet() -> str:
    """The CSS matching the fragments' classes."""
    return str(HtmlFormatter(cssclass=CSS_CLASS, style=STYLE).get_style_defs(f".{CSS_CLASS}"))


async def highlight_view(request: web.Request) -> web.Response:
    try:
        form = await request.post()
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the form is not valid UTF-8") from None
    lang, code = form.get("lang"), form.get("code")
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
    loop = asyncio.get_running_loop()
    try:
        html = await loop.run_in_executor(request.app[EXECUTOR], render, lang, code)
    except ClassNotFound:
        raise web.HTTPBadRequest(text=f"unknown language {lang!r}") from None
    return web.Response(text=html, content_type="text/html")


async def languages_view(request: web.Request) -> web.Response:
    return web.json_response(languages())


async def style_view(request: web.Request) -> web.Response:
    return web.Response(text=stylesheet(), content_type="text/css")


def _warm_up() -> None:
    render("python", "pass")


def create_app(max_code_bytes: int = 512 * 1024, processes: int | None = None) -> web.Application:
    """The highlighter app; Pygments runs in a pool of worker processes."""
    app = web.Application(client_max_size=max_code_bytes * 4 + 64 * 1024)
    app[MAX_CODE] = max_code_bytes

    async def executor_ctx(app: web.Application) -> AsyncIterator[None]:
        executor = ProcessPoolExecutor(
            max_workers=processes or os.cpu_count() or 1,
            mp_context=multiprocessing.get_context("forkserver"),
        )
        await asyncio.get_running_loop().run_in_executor(executor, _warm_up)
        app[EXECUTOR] = executor
        yield
        executor.shutdown(wait=True, cancel_futures=True)

    app.cleanup_ctx.append(executor_ctx)
    app.router.add_post("/", highlight_view, name="highlight")
    app.router.add_get("/languages", languages_view, name="languages")
    app.router.add_get("/style.css", style_view, name="style")
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    web.run_app(
        create_app(config.max_snippet_bytes),
        host=config.host,
        port=config.highlighter_port,
        print=lambda _: logger.info(
            "highlighter listening on http://%s:%d/", config.host, config.highlighter_port
        ),
    )


if __name__ == "__main__":
    main()
