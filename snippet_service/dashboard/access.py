"""Who may open /jobs: loopback only while DASHBOARD_PASSWORD is unset; with it set,
HTTP basic auth (any user name, that password) from anywhere."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import secrets

from aiohttp import web

from snippet_service.typedefs import CONFIG

PREFIX = "/jobs"
# A reverse proxy on this host makes every client look local: such requests need the
# password.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
REALM = 'Basic realm="snippet-service jobs", charset="UTF-8"'


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _password_ok(header: str, password: str) -> bool:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    _user, _, given = decoded.partition(":")
    return secrets.compare_digest(given.encode(), password.encode())


async def check_dashboard_access(request: web.Request) -> None:
    """403 for /jobs from afar without DASHBOARD_PASSWORD; 401 without the password."""
    if request.path == PREFIX or request.path.startswith(PREFIX + "/"):
        password = request.app[CONFIG].dashboard_password
        if not password:
            proxied = any(name in request.headers for name in PROXY_HEADERS)
            if proxied or not _is_loopback(request.remote):
                raise web.HTTPForbidden(
                    text="The jobs dashboard answers only local requests; set "
                    "DASHBOARD_PASSWORD to open it to others."
                )
        elif not _password_ok(request.headers.get("Authorization", ""), password):
            raise web.HTTPUnauthorized(
                text="Log in to see the jobs dashboard.", headers={"WWW-Authenticate": REALM}
            )
