"""HTML pages: the form, a snippet, its code fragment, its raw code and its live-update
stream."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qsl

import aiohttp_jinja2
from aiohttp import web

from snippet_service import db
from snippet_service.bulk import Draft
from snippet_service.queue import highlight_job_id
from snippet_service.web.events import DoneListener, Slot, StreamsFull
from snippet_service.web.forms import SnippetForm, validate_snippet
from snippet_service.web.lookup import cached_body, snippet_id
from snippet_service.web.options import EXPIRY_CHOICES, parse_expiry
from snippet_service.web.ratelimit import client_key
from snippet_service.web.reasons import visitor_reason
from snippet_service.web.stylesheet import StylesheetUnavailable
from snippet_service.web.typedefs import (
    CONFIG,
    DB,
    DONE,
    INTAKE,
    LANGUAGES,
    STREAMS,
    STYLESHEET,
)

logger = logging.getLogger("snippet_service.web.views")

HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8"}
EVENTS_MAX_SECONDS = 600.0
EVENTS_RECHECK_SECONDS = 2.0
# A stream's client that leaves this much unread, or lets one write wait this long, is
# not reading: its stream is dropped.
EVENTS_MAX_UNSENT_BYTES = 16 * 1024
EVENTS_WRITE_SECONDS = 5.0
EVENTS_RETRY_AFTER = 10


async def index_context(
    request: web.Request, form: SnippetForm, expires_in: str = "never"
) -> dict[str, Any]:
    return {
        "request": request,
        "form": form,
        "expires_in": expires_in,
        "languages": request.app[LANGUAGES],
        "expiry_choices": EXPIRY_CHOICES,
        "recent": await db.recent_summaries(request.app[DB]),
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
    snippet = await request.app[INTAKE].create(
        Draft(form.language, form.plain_code, expires_in=expires_in)
    )
    location = request.app.router["snippet"].url_for(id=str(snippet.id))
    raise web.HTTPSeeOther(location=location)


def code_context(request: web.Request, snippet: db.Snippet) -> dict[str, Any]:
    """What the snippet page and its code fragment show: never the stored error itself."""
    return {"request": request, "snippet": snippet, "reason": visitor_reason(snippet.error),
            "created": snippet.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "job_id": highlight_job_id(snippet.id, snippet.revision),
            # the breaker is open: a pending snippet says its highlighting is delayed
            "delayed": request.app[DONE].control.delayed}


async def show(request: web.Request) -> web.Response:
    """The snippet page."""

    def render(snippet: db.Snippet) -> bytes:
        context = code_context(request, snippet)
        return aiohttp_jinja2.render_string("snippet.html", request, context).encode()

    return web.Response(body=await cached_body(request, "page", render), headers=HTML_HEADERS)


async def code(request: web.Request) -> web.Response:
    """The snippet's code as the page shows it (``_code.html``), which the page's script
    swaps in when the stream says highlighting ended; one cached copy serves everyone."""

    def render(snippet: db.Snippet) -> bytes:
        context = code_context(request, snippet)
        return aiohttp_jinja2.render_string("_code.html", request, context).encode()

    body = await cached_body(request, "code", render)
    return web.Response(body=body, headers={**HTML_HEADERS, "Cache-Control": "no-cache"})


async def raw(request: web.Request) -> web.Response:
    snippet = await db.get_snippet(request.app[DB], snippet_id(request))
    return web.Response(text=snippet.plain_code, content_type="text/plain", charset="utf-8")


async def highlight_css(request: web.Request) -> web.Response:
    """The highlighter's stylesheet, kept by the web process (see web/stylesheet.py)."""
    try:
        css = await request.app[STYLESHEET].get()
    except StylesheetUnavailable:
        return web.Response(
            status=503, text="/* the highlighter is unavailable: no stylesheet yet */\n",
            content_type="text/css", headers={"Cache-Control": "no-store", "Retry-After": "10"})
    response = web.Response(text=css, content_type="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _sse(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class ClientGone(Exception):
    """The stream's client left, or stopped reading."""


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _send(request: web.Request, response: web.StreamResponse, chunk: bytes) -> None:
    """Write a chunk of the stream, or raise ClientGone: the client is gone, has left
    EVENTS_MAX_UNSENT_BYTES unread or lets the write wait EVENTS_WRITE_SECONDS."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ClientGone("disconnected")
    if transport.get_write_buffer_size() > EVENTS_MAX_UNSENT_BYTES:
        raise ClientGone("not reading")
    try:
        await asyncio.wait_for(response.write(chunk), EVENTS_WRITE_SECONDS)
    except TimeoutError:
        raise ClientGone("not reading") from None
    except OSError:
        raise ClientGone("disconnected") from None


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: one ``done`` event (``{"status": …}``) once highlighting ends;
    the page then fetches the code from ``/snippets/{id}/code``. At most
    EVENT_STREAMS_PER_CLIENT streams per client address and EVENT_STREAMS_TOTAL in all
    (429 above), and a client that does not read loses its stream."""
    ident, listener = snippet_id(request), request.app[DONE]
    state = await db.snippet_status(request.app[DB], ident)
    if state is None:
        raise db.SnippetNotFound(ident)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store"})
    try:
        with request.app[STREAMS].hold(client_key(request), lambda: _gone(request)) as slot:
            await _stream(request, response, listener, slot, ident, state)
    except StreamsFull as exc:
        raise web.HTTPTooManyRequests(
            text=exc.message, headers={"Retry-After": str(EVENTS_RETRY_AFTER)}
        ) from None
    return response


async def _stream(request: web.Request, response: web.StreamResponse, listener: DoneListener,
                  slot: Slot, ident: int, state: tuple[str, int]) -> None:
    """Wait for the snippet to finish (woken by the done channel, its status re-read every
    EVENTS_RECHECK_SECONDS), then send the news; a client that is gone or does not read
    has its connection dropped."""
    database, loop = request.app[DB], asyncio.get_running_loop()
    deadline = loop.time() + EVENTS_MAX_SECONDS
    delayed = request.query.get("delayed") == "1"  # what the page says (see snippet.html)
    try:
        await response.prepare(request)
        with listener.watch(ident) as wake:
            slot.wake = wake  # also set when the client leaves
            status: str | None = state[0]
            while status == db.PENDING and loop.time() < deadline:
                try:
                    await asyncio.wait_for(wake.wait(), EVENTS_RECHECK_SECONDS)
                except TimeoutError:
                    await _send(request, response, b": waiting\n\n")
                wake.clear()
                if _gone(request):
                    raise ClientGone("disconnected")
                state_now = await db.snippet_status(database, ident)
                status = state_now[0] if state_now else None
                if status == db.PENDING and listener.control.delayed != delayed:
                    delayed = listener.control.delayed  # the page fetches its fragment again
                    await _send(request, response, _sse("delayed", {"delayed": delayed}))
        if status != db.PENDING:
            await _send(request, response, _sse("done", {"status": status or "deleted"}))
        await asyncio.wait_for(response.write_eof(), EVENTS_WRITE_SECONDS)
    except (ClientGone, OSError) as exc:  # a reset, a broken pipe, a timed-out socket
        logger.debug("stream of snippet %d dropped: %s", ident, exc)
        if request.transport is not None:
            request.transport.abort()  # a client that does not read keeps nothing queued
