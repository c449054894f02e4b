"""HTML pages: the form with the public list, a snippet, its code fragment and its raw
code, and the highlighter's stylesheets."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import aiohttp_jinja2
from aiohttp import web

from snippet_service import db
from snippet_service.queue import highlight_job_id
from snippet_service.web import changes, text
from snippet_service.web.detect import language_name
from snippet_service.web.forms import SnippetForm
from snippet_service.web.lookup import Reading, cached, cached_body, keep, read, snippet_id
from snippet_service.web.middlewares import CSP_NONCE, new_nonce
from snippet_service.web.options import EXPIRY_CHOICES, VISIBILITY_CHOICES
from snippet_service.web.owner import set_owner_cookie
from snippet_service.web.reasons import visitor_reason
from snippet_service.web.stylesheet import STYLE_CHOICES, StylesheetUnavailable, UnknownStyle
from snippet_service.web.typedefs import (
    DB,
    DONE,
    LANGUAGES,
    PAGES,
    STYLESHEET,
)

logger = logging.getLogger("snippet_service.web.views")

HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8", "Vary": "Accept, Cookie"}
PAGE_SIZE = 20
MAX_PAGE = 500  # the list goes back 10,000 snippets: no request skips more rows than that
# A cached page is rendered with this stand-in for the script nonce; each answer gets a
# fresh nonce in its place (random per process: no snippet can contain it on purpose).
NONCE_STAND_IN = new_nonce()
NONCE_STAND_IN_BYTES = NONCE_STAND_IN.encode()


def page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise web.HTTPBadRequest(text=f"The page number must be a whole number from 1 to "
                                 f"{MAX_PAGE}.")
    return int(raw)


async def public_page(request: web.Request) -> tuple[int, list[db.SnippetSummary], bool]:
    """The page of the public list the query asks for (``?page=N``): its number, its
    snippets and whether another page follows."""
    page = page_number(request)
    listed = await db.public_summaries(request.app[DB], PAGE_SIZE + 1, (page - 1) * PAGE_SIZE)
    return page, listed[:PAGE_SIZE], len(listed) > PAGE_SIZE


def form_context(request: web.Request, form: SnippetForm, expires_in: str = "never",
                 visibility: str = "unlisted", burn: bool = False) -> dict[str, Any]:
    """What the snippet form (``_form.html``) shows, on the front page or the edit page."""
    return {
        "request": request,
        "form": form,
        "expires_in": expires_in,
        "visibility": visibility,
        "burn_after_reading": burn,
        "languages": request.app[LANGUAGES],
        "expiry_choices": EXPIRY_CHOICES,
        "visibility_choices": VISIBILITY_CHOICES,
    }


async def index_context(request: web.Request, form: SnippetForm, expires_in: str = "never",
                        visibility: str = "unlisted", burn: bool = False) -> dict[str, Any]:
    page, recent, has_next = await public_page(request)
    return {**form_context(request, form, expires_in, visibility, burn),
            "recent": recent, "page": page, "has_next": has_next}


@aiohttp_jinja2.template("index.html")
async def index(request: web.Request) -> dict[str, Any]:
    return await index_context(request, SnippetForm(language="auto"))


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
    """The form: a new snippet (a fork or an edit when it names its parent); the browser
    that created it gets its owner cookie."""
    fields = await read_form(request)
    submitted = await changes.create(request, fields)
    form, snippet = submitted.form, submitted.snippet
    if snippet is None:
        context = await index_context(request, form, fields.get("expires_in", "never"),
                                      submitted.visibility, submitted.burn)
        template = "edit.html" if form.parent and "parent" not in form.errors else "index.html"
        context.update(mode=fields.get("mode", "fork"), parent_id=form.parent)
        return aiohttp_jinja2.render_template(template, request, context, status=400)
    location = request.app.router["snippet"].url_for(id=snippet.id)
    response = web.Response(status=303, headers={"Location": str(location)})
    set_owner_cookie(request, response, snippet, submitted.token)
    return response


def expires_text(snippet: db.Snippet) -> str | None:
    if snippet.expires_at is None:
        return None
    return snippet.expires_at.strftime("%Y-%m-%d %H:%M UTC")


def line_count(code: str) -> int:
    """The lines a page shows: HTML reads a lone CR as a line end too, and a last line
    end starts no new line."""
    text = code.replace("\r\n", "\n").replace("\r", "\n")
    return max(1, text.count("\n") + (not text.endswith("\n")))


def code_context(request: web.Request, reading: Reading) -> dict[str, Any]:
    """What the snippet page and its code fragment show: never the stored error itself."""
    snippet = reading.snippet
    return {"request": request, "snippet": snippet, "reason": visitor_reason(snippet.error),
            "created": snippet.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "expires": expires_text(snippet),
            "job_id": highlight_job_id(snippet.id, snippet.revision),
            "language_name": language_name(snippet.language),
            "is_owner": reading.owner,
            "parent_id": snippet.parent_id,
            "line_count": line_count(snippet.plain_code),
            "burn_notice": ("burned" if reading.burned else
                            "owner" if snippet.burn_after_reading else None),
            # a burned snippet is gone: its page cannot wait for highlighting to end
            "live": snippet.status == db.PENDING and not reading.burned,
            # the breaker is open: a pending snippet says its highlighting is delayed
            "delayed": request.app[DONE].control.delayed}


def page_context(request: web.Request, reading: Reading) -> dict[str, Any]:
    return {**code_context(request, reading), "languages": request.app[LANGUAGES],
            "style_choices": STYLE_CHOICES}


def render_page(request: web.Request, context: dict[str, Any], status: int = 200,
                shared: bool = False) -> web.Response:
    """The snippet page; ``shared``: rendered with the nonce stand-in, to be cached."""
    if shared:
        request[CSP_NONCE] = NONCE_STAND_IN
    body = aiohttp_jinja2.render_string("snippet.html", request, context).encode()
    headers = dict(HTML_HEADERS)
    if not shared:
        headers["Cache-Control"] = "no-store"
    return web.Response(body=body, status=status, headers=headers)


def _with_fresh_nonce(request: web.Request, body: bytes) -> web.Response:
    nonce = request[CSP_NONCE] = new_nonce()
    return web.Response(body=body.replace(NONCE_STAND_IN_BYTES, nonce.encode()),
                        headers=HTML_HEADERS)


async def show(request: web.Request) -> web.StreamResponse:
    """The snippet page for browsers (or ``?format=html``); the code itself for a client
    that does not ask for HTML (curl, or ``?format=text``), or coloured for a terminal with
    ``?format=ansi``."""
    fmt = request.query.get("format")
    if fmt != "html" and (fmt or not text.wants_html(request)):
        return await text.answer(request)
    ident = snippet_id(request)
    body = cached(request, "page", ident)
    if body is not None:
        return _with_fresh_nonce(request, body)
    evictions = request.app[PAGES].evictions
    reading = await read(request, ident, burn=False)
    context = page_context(request, reading)
    if reading.withheld:
        context["burn_notice"] = "confirm"  # the code is shown once it is asked for
        return render_page(request, context)
    if not reading.shareable:
        return render_page(request, context)
    response = render_page(request, context, shared=True)
    assert isinstance(response.body, bytes)
    keep(request, "page", reading, response.body, evictions)
    return _with_fresh_nonce(request, response.body)


async def reveal(request: web.Request) -> web.Response:
    """``POST /snippets/{id}/read``: show a burn-after-reading snippet to the one reader
    it gets; it is deleted as it is shown."""
    reading = await read(request, snippet_id(request))
    return render_page(request, page_context(request, reading))


async def code(request: web.Request) -> web.Response:
    """The snippet's code as the page shows it (``_code.html``), which the page's script
    swaps in when the stream says highlighting ended; one cached copy serves everyone."""

    def render(reading: Reading) -> bytes:
        if reading.withheld:  # only its page, once asked, shows it (see reveal)
            raise db.SnippetNotFound(reading.snippet.id)
        context = code_context(request, reading)
        return aiohttp_jinja2.render_string("_code.html", request, context).encode()

    body = await cached_body(request, "code", render, burn=False)
    return web.Response(body=body, headers={**HTML_HEADERS, "Cache-Control": "no-cache"})


async def raw(request: web.Request) -> web.Response:
    reading = await read(request, snippet_id(request))
    return text.plain_response(reading.snippet.plain_code)


async def highlight_css(request: web.Request) -> web.Response:
    """The highlighter's stylesheet (``?style=NAME``: one of the styles offered), kept by
    the web process (see web/stylesheet.py)."""
    style = request.query.get("style")
    try:
        css = await request.app[STYLESHEET].get(style)
    except UnknownStyle:
        raise web.HTTPNotFound(text="No such style.") from None
    except StylesheetUnavailable:
        return web.Response(
            status=503, text="/* the highlighter is unavailable: no stylesheet yet */\n",
            content_type="text/css", headers={"Cache-Control": "no-store", "Retry-After": "10"})
    response = web.Response(text=css, content_type="text/css")
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response
