"""Cross-site request forgery protection for the HTML form.

Two independent checks guard every form POST:

- the browser's own word: ``Sec-Fetch-Site`` must be ``same-origin`` (or ``none``, a
  user-typed request); browsers too old to send it are checked on ``Origin`` against
  ``Host`` instead (the approach of Go's ``http.CrossOriginProtection``);
- a token: a random value in an HttpOnly, SameSite=Lax cookie that the form repeats in a
  hidden field (``{{ csrf_token() }}`` in templates). Another site can neither read the
  cookie nor guess the value. With COOKIE_SECURE (the site is served over HTTPS, say by a
  TLS-terminating proxy) the cookie is ``__Host-csrf_token``: Secure, Path=/ and no
  Domain, so neither plain HTTP nor a sibling subdomain can set or overwrite it.

The JSON API takes no cookies and accepts only ``application/json``, which a cross-site
page cannot send without a CORS preflight that we never grant, so it is not checked; nor
are ``PUT`` uploads (``curl -T``), which no cross-site page can send without a preflight
either, and which no cookie authorises.
"""

from __future__ import annotations

import logging
import re
import secrets
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl

import jinja2
from aiohttp import web
from jinja2.runtime import Context
from yarl import URL

from snippet_service.web.middlewares import is_api, read_body
from snippet_service.web.typedefs import CONFIG

logger = logging.getLogger("snippet_service.web.csrf")

COOKIE_NAME = "csrf_token"
SECURE_COOKIE_NAME = "__Host-csrf_token"  # with COOKIE_SECURE
FIELD_NAME = "csrf_token"
COOKIE_MAX_AGE = 365 * 24 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})

CROSS_SITE = "Forms sent from other sites are refused."
BAD_TOKEN = (
    "The form's security token is missing or out of date."
    " Reload the form and submit it again."
)

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
ISSUED_TOKEN = web.RequestKey("csrf_issued_token", str)  # the cookie the response must set


def cookie_name(request: web.Request) -> str:
    """The token cookie's name: ``__Host-csrf_token`` with COOKIE_SECURE."""
    return SECURE_COOKIE_NAME if request.app[CONFIG].cookie_secure else COOKIE_NAME


def _cookie_token(request: web.Request) -> str | None:
    value = request.cookies.get(cookie_name(request), "")
    return value if _TOKEN.fullmatch(value) else None


def csrf_token(request: web.Request) -> str:
    """This browser's token (a new one when it has none); the response sets the cookie."""
    token = request.get(ISSUED_TOKEN) or _cookie_token(request) or secrets.token_urlsafe(32)
    request[ISSUED_TOKEN] = token
    return token


@jinja2.pass_context
def template_csrf_token(context: Context) -> str:
    """``{{ csrf_token() }}`` in templates, for the hidden field."""
    return csrf_token(context["request"])


def _same_host(origin: str, request: web.Request) -> bool:
    try:
        url = URL(origin)
        own = URL(f"{url.scheme}://{request.host}")
    except ValueError:
        return False
    if url.scheme not in ("http", "https") or not url.host:
        return False
    return (url.host, url.port) == (own.host, own.port)


def _refuse_cross_site(request: web.Request) -> None:
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        allowed = site in ALLOWED_FETCH_SITES
        seen = f"Sec-Fetch-Site: {site}"
    else:
        origin = request.headers.get("Origin")
        allowed = origin is None or _same_host(origin, request)
        seen = f"Origin: {origin}"
    if not allowed:
        logger.info("refused %s %s from %s (%s)", request.method, request.path,
                    request.remote, seen)
        raise web.HTTPForbidden(text=CROSS_SITE)


async def _submitted_token(request: web.Request) -> str:
    if request.content_type not in FORM_TYPES:
        raise web.HTTPUnsupportedMediaType(text="Submit the form as a web form.")
    await read_body(request)
    if request.content_type == "multipart/form-data":
        value = (await request.post()).get(FIELD_NAME)
        return value if isinstance(value, str) else ""
    # Latin-1 maps every byte to a character, so a body that is not UTF-8 still yields
    # the token; the handler then refuses that body with its own message.
    body = (await request.read()).decode("latin-1")
    for key, value in parse_qsl(body, keep_blank_values=True, encoding="latin-1"):
        if key == FIELD_NAME:
            return value
    return ""


async def check_csrf(request: web.Request) -> None:
    """Refuse cross-site form POSTs and POSTs without this browser's token (403)."""
    if (
        request.method not in SAFE_METHODS
        and request.method != "PUT"
        and not is_api(request)
        and request.match_info.http_exception is None
    ):
        _refuse_cross_site(request)
        submitted = await _submitted_token(request)
        expected = _cookie_token(request)
        if expected is None or not secrets.compare_digest(submitted.encode(), expected.encode()):
            reason = ("no token cookie" if expected is None else
                      "no token in the form" if not submitted else "the tokens differ")
            logger.info("refused %s %s from %s: %s", request.method, request.path,
                        request.remote, reason)
            raise web.HTTPForbidden(text=BAD_TOKEN)


async def set_csrf_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """An on_response_prepare signal: set the cookie of a token a page handed out."""
    token = request.get(ISSUED_TOKEN)
    if token is None:
        return
    name = cookie_name(request)
    jar: SimpleCookie = SimpleCookie()
    jar[name] = token
    morsel = jar[name]
    morsel.update({"max-age": str(COOKIE_MAX_AGE), "path": "/", "samesite": "Lax"})
    morsel["httponly"] = True
    if request.secure or request.app[CONFIG].cookie_secure:
        morsel["secure"] = True
    # The signal runs after aiohttp turned response.cookies into headers: add the header.
    response.headers.add("Set-Cookie", morsel.OutputString())
