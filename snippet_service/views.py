"""HTML pages: the form, a snippet, its raw code and its live-update stream."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import aiohttp_jinja2
from aiohttp import web

from snippet_service import db
from snippet_service.forms import SnippetForm, validate_snippet
from snippet_service.highlighter import stylesheet
from snippet_service.options import EXPIRY_CHOICES, parse_expiry
from snippet_service.typedefs import CONFIG, DB, DONE, INTAKE, LANGUAGES, PAGES

logger = logging.getLogger("snippet_service.views")

MAX_ID = 2**63 - 1
HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8"}
EVENTS_MAX_SECONDS = 600.0
EVENTS_RECHECK_SECONDS = 2.0


def snippet_id(request: web.Request) -> int:
    """The id in the URL; anything that cannot be a stored id is a 404."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > MAX_ID:
        raise web.HTTPNotFound(text="No such snippet.")
    return int(raw)


async def store_and_enqueue(
    request: web.Request,
    form: SnippetForm,
    highlight_in: float = 0.0,
    expires_in: float | None = None,
) -> db.Snippet:
    """Save a valid snippet as pending and enqueue its highlight job (by id) and, for an
    expiring snippet, its deferred delete; grouped with the other snippets posted in the
    same tick (one INSERT, one Redis round trip). With Redis down the snippet stays pending
    and the worker's reconciler enqueues it later."""
    return await request.app[INTAKE].create(
        db.Draft(form.language, form.plain_code, highlight_in, expires_in)
    )


async def index_context(
    request: web.Request, form: SnippetForm, expires_in: str = "never"
) -> dict[str, Any]:
    return {
        "request": request,
        "form": form,
        "expires_in": expires_in,
        "languages": request.app[LANGUAGES],
        "expiry_choices": EXPIRY_CHOICES,
        "recent": await db.recent_snippets(request.app[DB]),
    }


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return await index_context(request, SnippetForm(language=request.app[LANGUAGES].default))


async def read_form(request: web.Request) -> dict[str, str]:
    """The submitted fields, decoded strictly as UTF-8 (CRLF line ends become LF)."""
    if request.content_type == "application/x-www-form-urlencoded":
        try:
            body = (await request.read()).decode("utf-8")
            pairs = parse_qsl(body, keep_blank_values=True, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise web.HTTPBadRequest(text="The form is not valid UTF-8.") from None
    elif request.content_type == "multipart/form-data":
        try:
            pairs = [(k, v) for k, v in (await request.post()).items() if isinstance(v, str)]
        except (UnicodeDecodeError, ValueError):
            raise web.HTTPBadRequest(text="The form could not be read.") from None
    else:
        raise web.HTTPUnsupportedMediaType(text="Submit the form as a web form.")
    return {key: value.replace("\r\n", "\n") for key, value in pairs}


async def create(request: web.Request) -> web.StreamResponse:
    fields = await read_form(request)
    form = validate_snippet(fields, request.app[LANGUAGES], request.app[CONFIG].max_snippet_bytes)
    expires_in = parse_expiry(fields, form.errors)
    if not form.valid:
        context = await index_context(request, form, fields.get("expires_in", "never"))
        return aiohttp_jinja2.render_template("index.html", request, context, status=400)
    snippet = await store_and_enqueue(request, form, expires_in=expires_in)
    location = request.app.router["snippet"].url_for(id=str(snippet.id))
    raise web.HTTPSeeOther(location=location)


def expiry_epoch(snippet: db.Snippet) -> float | None:
    return db.parse_timestamp(snippet.expires_at).timestamp() if snippet.expires_at else None


async def cached_body(
    request: web.Request, kind: str, render: Callable[[db.Snippet], bytes]
) -> bytes:
    """The rendered body of the snippet in the URL; a finished snippet's comes from the
    page cache (only if nothing was evicted while it was read and rendered)."""
    ident, pages = snippet_id(request), request.app[PAGES]
    body = pages.get(kind, ident)
    if body is None:
        evictions = pages.evictions
        snippet = await db.get_snippet(request.app[DB], ident)
        body = render(snippet)
        if snippet.status != db.PENDING:
            pages.put(kind, ident, body, expiry_epoch(snippet), evictions)
    return body


async def show(request: web.Request) -> web.Response:
    """The snippet page."""

    def render(snippet: db.Snippet) -> bytes:
        context = {"request": request, "snippet": snippet}
        return aiohttp_jinja2.render_string("snippet.html", request, context).encode()

    return web.Response(body=await cached_body(request, "page", render), headers=HTML_HEADERS)


async def raw(request: web.Request) -> web.Response:
    snippet = await db.get_snippet(request.app[DB], snippet_id(request))
    return web.Response(text=snippet.plain_code, content_type="text/plain", charset="utf-8")


async def highlight_css(request: web.Request) -> web.Response:
    response = web.Response(text=stylesheet(), content_type="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``done`` event with the rendered code once highlighting ends."""
    database, listener = request.app[DB], request.app[DONE]
    ident = snippet_id(request)
    snippet = await db.get_snippet(database, ident)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + EVENTS_MAX_SECONDS
    with listener.watch(ident) as wake:
        while snippet.status == db.PENDING and loop.time() < deadline:
            try:
                await asyncio.wait_for(wake.wait(), EVENTS_RECHECK_SECONDS)
            except TimeoutError:
                await response.write(b": waiting\n\n")
            wake.clear()
            snippet = await db.get_snippet(database, ident)
    if snippet.status != db.PENDING:
        html = aiohttp_jinja2.render_string(
            "_code.html", request, {"request": request, "snippet": snippet}
        )
        await response.write(_sse("done", {"status": snippet.status, "html": html}))
    await response.write_eof()
    return response
