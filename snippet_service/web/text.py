"""Answers for terminals and files: a snippet's plain code for a client that does not ask
for HTML (curl), its terminal colouring (``?format=ansi``, made by a worker job on first
request and kept), its download, and ``PUT`` uploads (``curl -T file.py URL``)."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from aiohttp import web

from snippet_service import db
from snippet_service.snippets import REDIS_ERRORS
from snippet_service.terminal import ansi_pending, request_ansi
from snippet_service.web import changes
from snippet_service.web.detect import AUTO, download_name, unicode_name
from snippet_service.web.lookup import Reading, cached_body, page_url, read, snippet_id
from snippet_service.web.middlewares import PLAIN_ERRORS
from snippet_service.web.typedefs import CONFIG, DONE, REDIS

logger = logging.getLogger("snippet_service.web.text")

BURN_NOTICE = ("This snippet is deleted after its first reading. To read it now (and delete"
               " it), ask for ?format=text or ?format=ansi, or open it in a browser.")
FORMATS = ("text", "ansi")
# How long a request for the terminal colouring waits for its job before a 503.
ANSI_WAIT_SECONDS = 10.0
ANSI_RETRY_AFTER = 2


def wants_html(request: web.Request) -> bool:
    """Whether the client asks for HTML (every browser's Accept names it; curl's is */*)."""
    accept = request.headers.get("Accept", "")
    return "text/html" in accept or "application/xhtml+xml" in accept


def plain_response(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/plain",
                        charset="utf-8", headers={"Vary": "Accept"})


async def answer(request: web.Request) -> web.StreamResponse:
    """``GET /snippets/{id}`` for a terminal: the plain code, or ``?format=ansi``."""
    request[PLAIN_ERRORS] = True
    asked = request.query.get("format")
    fmt = asked or "text"
    if fmt not in FORMATS:
        raise web.HTTPBadRequest(text="format must be html, text or ansi.")
    if fmt == "ansi":
        return await ansi(request)

    def render(reading: Reading) -> bytes:
        if reading.withheld and asked is None:  # (a HEAD that asked is only a look)
            raise web.HTTPConflict(text=BURN_NOTICE)
        return reading.snippet.plain_code.encode("utf-8")

    # A link fetched by a preview or a scanner must not use up a burn-after-reading
    # snippet's one view: only a reader asking for ?format=text reads (and deletes) it.
    body = await cached_body(request, "text", render, burn=asked is not None)
    return web.Response(body=body, headers={"Content-Type": "text/plain; charset=utf-8",
                                            "Vary": "Accept"})


def _coloured(snippet: db.Snippet) -> bool:
    return snippet.ansi_code is not None and snippet.ansi_revision == snippet.revision


async def ansi(request: web.Request) -> web.Response:
    """The code coloured for a 256-colour terminal: made once per revision by the worker's
    ``ansi_snippet`` job (this request enqueues it and waits up to ANSI_WAIT_SECONDS for
    the snippet-done channel), then read from the database. A job that ended without it
    (the highlighter refused the code) leaves the plain code."""
    ident, app = snippet_id(request), request.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSI_WAIT_SECONDS
    with app[DONE].watch(ident) as wake:
        reading = await read(request, ident, burn=False)
        if request.method == "HEAD":  # a look: nothing made, nothing used up
            return plain_response("")
        try:
            reading = await _wait_for_colours(request, reading, wake, deadline)
        except REDIS_ERRORS as exc:
            logger.warning("terminal colouring of %s not asked for: %r", ident, exc)
            raise web.HTTPServiceUnavailable(
                text="The terminal colouring cannot be made now: try again in a moment.",
                headers={"Retry-After": str(ANSI_RETRY_AFTER)}) from None
    if reading.withheld:
        reading = await read(request, ident)  # this reading is its one view
    snippet = reading.snippet
    return plain_response(snippet.ansi_code if _coloured(snippet) and snippet.ansi_code
                          else snippet.plain_code)


async def _wait_for_colours(request: web.Request, reading: Reading, wake: asyncio.Event,
                            deadline: float) -> Reading:
    """The reading once its revision is coloured, or once its job ended without (the
    plain code is answered then); a 503 at the deadline."""
    ident, app, loop = reading.snippet.id, request.app, asyncio.get_running_loop()
    if not _coloured(reading.snippet):
        await request_ansi(app[REDIS], ident, reading.snippet.revision,
                           app[CONFIG].queue_name)
    while not _coloured(reading.snippet):
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise web.HTTPServiceUnavailable(
                text="The terminal colouring is not ready yet: try again in a moment.",
                headers={"Retry-After": str(ANSI_RETRY_AFTER)})
        try:
            await asyncio.wait_for(wake.wait(), min(remaining, 1.0))
        except TimeoutError:
            pass
        wake.clear()
        reading = await read(request, ident, burn=False)
        if not _coloured(reading.snippet) and not await ansi_pending(
                app[REDIS], ident, reading.snippet.revision):
            # the job ended: its text, if it stored one, is there now
            return await read(request, ident, burn=False)
    return reading


async def download(request: web.Request) -> web.Response:
    """The exact code as a file: ``Content-Disposition: attachment`` with a safe name."""
    snippet = (await read(request, snippet_id(request))).snippet
    name = download_name(snippet.title, snippet.id, snippet.language)
    disposition = f'attachment; filename="{name}"'
    full_name = unicode_name(snippet.title)
    if full_name:  # RFC 6266: browsers prefer this one
        disposition += f"; filename*=UTF-8''{quote(full_name, safe='')}"
    return web.Response(body=snippet.plain_code.encode("utf-8"), headers={
        "Content-Type": "text/plain; charset=utf-8",
        "Content-Disposition": disposition,
        "Cache-Control": "no-store" if snippet.burn_after_reading else "no-cache",
    })


async def upload(request: web.Request) -> web.Response:
    """``PUT /`` or ``PUT /{filename}`` (``curl -T file.py URL``, ``cmd | curl -T - URL``):
    the body is the code. The query may name ``language`` (else the file name's extension,
    else a guess), ``title``, ``expires`` (as the form's choices), ``visibility`` and
    ``burn``. Answers the page URL and the owner token, one per line."""
    request[PLAIN_ERRORS] = True
    try:
        code = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="The code is not valid UTF-8.") from None
    query = request.query
    filename = request.match_info.get("filename", "")
    fields = {"language": query.get("language") or query.get("lang") or AUTO,
              "plain_code": code,
              "title": query.get("title") or (filename if filename != "-" else None),
              "expires_in": query.get("expires"), "visibility": query.get("visibility"),
              "burn_after_reading": query.get("burn")}
    submitted = await changes.create(request, fields)
    snippet = submitted.snippet
    if snippet is None:
        return plain_response("\n".join(submitted.form.errors.values()) + "\n", status=400)
    url = page_url(request, snippet.id)
    response = plain_response(f"{url}\n{submitted.token}\n", status=201)
    response.headers["Location"] = url
    return response
