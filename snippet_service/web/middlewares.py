"""Error pages (JSON under /api), request bodies read up front (with a size cap, a time
limit and a cap on the bytes one client may have in flight), security headers, request ids
(taken from a valid incoming X-Request-ID or made here, carried by every log line of the
request and returned in the response) and quiet logs for malformed requests."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import secrets
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
import jinja2
from aiohttp import web, web_response
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from jinja2.runtime import Context

from snippet_service import logs
from snippet_service.db import SnippetNotFound
from snippet_service.web.forms import SnippetTooLarge
from snippet_service.web.typedefs import BODIES, CONFIG

logger = logging.getLogger("snippet_service.web.middlewares")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Check = Callable[[web.Request], Awaitable[None]]

REQUEST_ID = web.RequestKey("request_id", str)
REQUEST_ID_HEADER = "X-Request-ID"
# An incoming X-Request-ID is kept only if it is short and plain (it goes into every log
# line and back out in a header); anything else is replaced by one of ours.
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
BODY_READ = web.RequestKey("body_read", bool)
# Set when the rest of the request will never arrive: answer, then close the connection.
CLOSE_CONNECTION = web.RequestKey("close_connection", bool)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
SERVER_NAME = "snippet-service"  # the Server header: no software versions

# What aiohttp's multipart parser raises for a malformed body: bad boundaries and
# lengths (ValueError), unknown charsets (LookupError) and transfer encodings
# (RuntimeError), too many part headers (HttpProcessingError).
MULTIPART_ERRORS = (ValueError, LookupError, RuntimeError, HttpProcessingError)

TITLES = {
    400: "Bad request",
    401: "Log in",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    413: "Too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Something went wrong",
    507: "Insufficient storage",
}

CSP_NONCE = web.RequestKey("csp_nonce", str)
# Set by the answers for terminals (web/text.py): their errors are plain text too.
PLAIN_ERRORS = web.RequestKey("plain_errors", bool)
# Set for an answer about a burn-after-reading snippet: no cache may keep it.
NO_STORE = web.RequestKey("no_store", bool)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src {scripts}; style-src 'self';"
    " img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
# A response whose page asked for no nonce has no script at all: it may run none.
NO_SCRIPT_POLICY = CONTENT_SECURITY_POLICY.format(scripts="'none'")
_BEFORE_NONCE, _AFTER_NONCE = CONTENT_SECURITY_POLICY.split("{scripts}")


def new_nonce() -> str:
    """128 random bits in hex (hex digits are base64 characters, as CSP asks)."""
    return os.urandom(16).hex()


def csp_nonce(request: web.Request) -> str:
    """This response's script nonce: only <script nonce=…> tags carrying it run."""
    nonce = request.get(CSP_NONCE)
    if nonce is None:
        nonce = request[CSP_NONCE] = new_nonce()
    return nonce


@jinja2.pass_context
def template_csp_nonce(context: Context) -> str:
    """``{{ csp_nonce() }}`` in templates, for script tags."""
    return csp_nonce(context["request"])


def new_request_id() -> str:
    """A unique id for logs and error pages: a per-process random prefix and a counter
    (no system call per request)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08x}"


_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count()


def request_id_for(request: web.Request) -> str:
    """The request's id: a valid incoming X-Request-ID (a proxy's, say), else a new one."""
    incoming = request.headers.get(REQUEST_ID_HEADER)
    if incoming is not None and VALID_REQUEST_ID.fullmatch(incoming):
        return incoming
    return new_request_id()


class RequestIdAccessLogger(AccessLogger):
    """aiohttp's access log, with each line carrying the request id (the line is written
    after the handler's own log context has ended)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        with logs.bound(request_id=request.get(REQUEST_ID)):
            super().log(request, response, time)


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def error_response(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    request_id = request.get(REQUEST_ID, "")
    if is_api(request):
        body = {"error": message, "status": status, "request_id": request_id}
        return web.json_response(body, status=status, headers=headers)
    if request.get(PLAIN_ERRORS) or request.method == "PUT":  # a terminal's: one line
        return web.Response(text=f"{message}\n", status=status, content_type="text/plain",
                            charset="utf-8", headers=headers)
    context = {
        "request": request,
        "status": status,
        "title": TITLES.get(status, "Error"),
        "message": message,
        "request_id": request_id,
    }
    response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    if headers:
        response.headers.update(headers)
    return response


def too_large_message(request: web.Request) -> str:
    limit = request.app[CONFIG].max_snippet_bytes
    return (
        f"The request is over {request.client_max_size} bytes;"
        f" the code may be at most {limit} bytes ({limit // 1024} KiB)."
    )


async def read_body(request: web.Request) -> None:
    """Read the whole body now (aiohttp keeps it for the handler); idempotent.

    A Content-Length over ``client_max_size`` is a 413 before a byte is read (a chunked
    body is cut off at the limit); a client already sending other bodies past
    BODY_BYTES_IN_FLIGHT_PER_CLIENT is a 429 before a byte is read; a body that takes
    longer than BODY_READ_TIMEOUT is a 408 and its connection is closed.
    """
    if request.get(BODY_READ):
        return
    length, limit = request.content_length, request.client_max_size
    if length is not None and length > limit:
        raise web.HTTPRequestEntityTooLarge(limit, length)
    if request.body_exists:
        if request.content.is_eof():  # it all came with the headers: nothing to wait for
            await _read(request)
        else:
            await _read_in_time(request, limit if length is None else length)
    request[BODY_READ] = True


async def _read(request: web.Request) -> None:
    if request.content_type == "multipart/form-data":
        try:
            await request.post()
        except MULTIPART_ERRORS:
            raise web.HTTPBadRequest(text="The form could not be read.") from None
    else:
        await request.read()


async def _read_in_time(request: web.Request, size: int) -> None:
    from snippet_service.web.ratelimit import client_key  # ratelimit imports this module

    config, in_flight, client = request.app[CONFIG], request.app[BODIES], client_key(request)
    if not in_flight.reserve(client, size):
        logger.debug("refused %s %s from %s: %d body bytes already in flight",
                     request.method, request.path, request.remote, in_flight.held(client))
        retry_after = str(math.ceil(config.body_read_timeout))
        request[CLOSE_CONNECTION] = True  # reading on to discard the body would feed it
        raise web.HTTPTooManyRequests(
            text="Your address is already sending other requests; wait for them to finish.",
            headers={"Retry-After": retry_after})
    try:
        async with asyncio.timeout(config.body_read_timeout):
            await _read(request)
    except TimeoutError:
        logger.info("request %s %s from %s: the body did not arrive within %g s",
                    request.method, request.path, request.remote, config.body_read_timeout)
        request[CLOSE_CONNECTION] = True
        raise web.HTTPRequestTimeout(
            text=f"The request body did not arrive within {config.body_read_timeout:g} seconds."
        ) from None
    finally:
        in_flight.release(client, size)


async def check_body(request: web.Request) -> None:
    """Every body a route takes is read here, before its handler, under read_body's limits."""
    if request.method not in SAFE_METHODS and request.match_info.http_exception is None:
        await read_body(request)


async def _answer_and_close(request: web.Request,
                            response: web.StreamResponse) -> web.StreamResponse:
    """Send the response now, then close the connection without waiting for the rest of
    the request (aiohttp would otherwise keep reading it for a while)."""
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = request[REQUEST_ID] = request_id_for(request)
    # Every line logged for this request carries its id (logs.bound, without the
    # context manager's cost on every request).
    bound = logs.REQUEST_ID.set(request_id)
    try:
        return await handler(request)
    except SnippetNotFound:
        return error_response(request, 404, "No such snippet.")
    except SnippetTooLarge as exc:
        return error_response(request, 413, str(exc).capitalize() + ".")
    except web.HTTPRequestEntityTooLarge:
        return error_response(request, 413, too_large_message(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        kept = ("Allow", "Retry-After", "WWW-Authenticate")
        headers = {k: v for k, v in exc.headers.items() if k in kept}
        response = error_response(request, exc.status, message or exc.reason, headers)
        if request.get(CLOSE_CONNECTION):
            return await _answer_and_close(request, response)
        return response
    except ConnectionResetError:
        # The client went away while we read its request: nobody is left to answer.
        logger.info("request %s %s: the client disconnected (request id %s)",
                    request.method, request.path, request[REQUEST_ID])
        return error_response(request, 400, "The request was cut off.")
    except Exception:
        logger.exception("request %s %s failed (request id %s)",
                         request.method, request.path, request[REQUEST_ID])
        return error_response(request, 500, "An unexpected error occurred.")
    finally:
        logs.REQUEST_ID.reset(bound)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Sent with every response, streamed ones included (an on_response_prepare signal)."""
    headers = response.headers
    headers["Server"] = SERVER_NAME
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")
    nonce = request.get(CSP_NONCE)
    headers.setdefault(
        "Content-Security-Policy",
        NO_SCRIPT_POLICY if nonce is None
        else f"{_BEFORE_NONCE}'nonce-{nonce}' 'strict-dynamic'{_AFTER_NONCE}",
    )
    request_id = request.get(REQUEST_ID)
    if request_id:
        headers.setdefault(REQUEST_ID_HEADER, request_id)
    if request.get(NO_STORE):
        headers["Cache-Control"] = "no-store"


def guard(*checks: Check) -> Middleware:
    """One middleware running checks in order before the handler (each may raise an
    HTTP error); one layer instead of one per check keeps every request cheaper."""

    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        for check in checks:
            await check(request)
        return await handler(request)

    return guarded


def hide_server_version() -> None:
    """Make aiohttp's own answers (a 400 for a malformed request, which no signal sees)
    name no software versions either: aiohttp reads this module attribute per response."""
    web_response.SERVER_SOFTWARE = SERVER_NAME  # type: ignore[attr-defined]


class MalformedRequestFilter(logging.Filter):
    """For aiohttp's server logger: a malformed request is the client's fault, so it is one
    INFO line (what was wrong, one line, cut short) instead of an ERROR with a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            what = " ".join(str(exc.message).split())[:200]
            record.msg, record.args = "malformed request from %s: %d %r", (
                record.args[0] if isinstance(record.args, tuple) and record.args else "?",
                exc.code, what)
            record.exc_info, record.exc_text = None, None
            if record.levelno > logging.INFO:
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_malformed_requests() -> None:
    """Install MalformedRequestFilter on aiohttp's server logger (once)."""
    server_logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server_logger.filters):
        server_logger.addFilter(MalformedRequestFilter())
