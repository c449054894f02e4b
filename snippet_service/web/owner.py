"""Who owns the snippet a request names: the API sends the owner token as
``Authorization: Bearer <token>``; a browser keeps it in an HttpOnly cookie scoped to that
snippet's pages (``owner_<id>``, path ``/snippets/<id>``), set when its form created it.
A form that changes a snippet needs that cookie and passes the CSRF check (csrf.py)."""

from __future__ import annotations

from aiohttp import web

from snippet_service import db, owners
from snippet_service.web.middlewares import is_api
from snippet_service.web.typedefs import CONFIG

COOKIE_PREFIX = "owner_"
# Browsers keep a cookie at most 400 days; a snippet that expires sooner takes its expiry.
COOKIE_MAX_AGE = 400 * 86400
NOT_OWNER = "Only the snippet's owner may do this: send its owner token."
NOT_OWNER_PAGE = "Only the snippet's owner may do this, from the browser that created it."


def cookie_name(snippet_id: str) -> str:
    return COOKIE_PREFIX + snippet_id


def set_owner_cookie(request: web.Request, response: web.StreamResponse,
                     snippet: db.Snippet, token: str) -> None:
    """Hand the new snippet's owner token to the browser that created it."""
    max_age = COOKIE_MAX_AGE
    if snippet.expires_at is not None:
        max_age = min(max_age, max(1, int((snippet.expires_at - db.utcnow()).total_seconds())))
    response.set_cookie(
        cookie_name(snippet.id), token, max_age=max_age, path=f"/snippets/{snippet.id}",
        httponly=True, samesite="Lax",
        secure=request.secure or request.app[CONFIG].cookie_secure)


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def presented_token(request: web.Request, snippet_id: str) -> str | None:
    """The owner token the request carries: the bearer token, else the snippet's cookie
    (on every page view: the headers are looked at before anything is parsed)."""
    headers = request.headers
    if "Authorization" in headers:
        token = bearer_token(request)
        if token:
            return token
    if COOKIE_PREFIX not in headers.get("Cookie", ""):
        return None
    return request.cookies.get(cookie_name(snippet_id)) or None


def is_owner(request: web.Request, snippet: db.Snippet) -> bool:
    return owners.owns(snippet.owner_hash, presented_token(request, snippet.id))


def require_owner(request: web.Request, snippet: db.Snippet) -> None:
    """403 unless the request carries the snippet's owner token."""
    if not is_owner(request, snippet):
        raise web.HTTPForbidden(text=NOT_OWNER if is_api(request) else NOT_OWNER_PAGE)
