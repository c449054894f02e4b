"""Error pages (JSON under /api), security headers and request ids."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from snippet_service.db import SnippetNotFound
from snippet_service.forms import SnippetTooLarge

logger = logging.getLogger("snippet_service.middlewares")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

TITLES = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    413: "Too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Something went wrong",
}


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


def error_response(
    request: web.Request, status: int, message: str, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    request_id = request.get("request_id", "")
    if is_api(request):
        body = {"error": message, "status": status, "request_id": request_id}
        return web.json_response(body, status=status, headers=headers)
    context = {
        "status": status,
        "title": TITLES.get(status, "Error"),
        "message": message,
        "request_id": request_id,
    }
    response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    if headers:
        response.headers.update(headers)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    request["request_id"] = secrets.token_hex(8)
    try:
        return await handler(request)
    except SnippetNotFound:
        return error_response(request, 404, "No such snippet.")
    except SnippetTooLarge as exc:
        return error_response(request, 413, str(exc).capitalize() + ".")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(request, exc.status, message or exc.reason, headers)
    except Exception:
        logger.exception("request %s %s failed (request id %s)",
                         request.method, request.path, request["request_id"])
        return error_response(request, 500, "An unexpected error occurred.")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Sent with every response, streamed ones included (an on_response_prepare signal)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    )
    if request.get("request_id"):
        headers.setdefault("X-Request-Id", request["request_id"])
