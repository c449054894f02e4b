"""A snippet's live-update stream: server-sent events that say when highlighting ended."""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import web

from snippet_service import db
from snippet_service.web.events import DoneListener, Slot, StreamsFull
from snippet_service.web.lookup import snippet_id
from snippet_service.web.ratelimit import client_key
from snippet_service.web.typedefs import DB, DONE, STREAMS

logger = logging.getLogger("snippet_service.web.stream")

EVENTS_MAX_SECONDS = 600.0
EVENTS_RECHECK_SECONDS = 2.0
# A stream's client that leaves this much unread, or lets one write wait this long, is
# not reading: its stream is dropped.
EVENTS_MAX_UNSENT_BYTES = 16 * 1024
EVENTS_WRITE_SECONDS = 5.0
EVENTS_RETRY_AFTER = 10


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
                  slot: Slot, ident: str, state: tuple[str, int]) -> None:
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
        logger.debug("stream of snippet %s dropped: %s", ident, exc)
        if request.transport is not None:
            request.transport.abort()  # a client that does not read keeps nothing queued
