"""Who may open /jobs.

Without DASHBOARD_PASSWORD: only requests from a loopback peer, naming a loopback host in
``Host`` (so a page whose name was rebound to 127.0.0.1 gets nothing) and carrying no
forwarding header (a proxy on this host makes every client look local). With it: HTTP basic
auth (any user name, that password) from anywhere, and a client that gets the password
wrong AUTH_FAILURES_PER_MINUTE times is refused (429) until its minute is over.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import secrets

from aiohttp import web

from snippet_service.config import Config
from snippet_service.web.ratelimit import client_key
from snippet_service.web.typedefs import AUTH_FAILURES, CONFIG

logger = logging.getLogger("snippet_service.web.dashboard")

PREFIX = "/jobs"
METRICS_PATH = "/metrics"  # Prometheus' scrape: the same rule as the dashboard
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
REALM = 'Basic realm="snippet-service jobs", charset="UTF-8"'
AUTH_FAILURES_PER_MINUTE = 5
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})

# How this request got in: "password" or "loopback" (for the action log).
ACCESS = web.RequestKey("dashboard_access", str)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str | None) -> bool:
    """Whether a Host header names this machine: localhost, 127.x.x.x or [::1], with or
    without a port."""
    if not host:
        return False
    host = host.strip().lower()
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            return False
        port = port[1:]
    else:
        name, colon, port = host.rpartition(":") if ":" in host else (host, "", "")
        if colon and ":" in name:
            return False  # an IPv6 address without brackets is not a valid Host
    if port and not (port.isascii() and port.isdigit()):
        return False
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
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


def describe(config: Config) -> str:
    """One line saying how /jobs is protected, logged at start."""
    if config.dashboard_password:
        return (f"jobs dashboard {PREFIX}: HTTP basic auth with DASHBOARD_PASSWORD, from any"
                f" address ({AUTH_FAILURES_PER_MINUTE} wrong passwords a minute per client)")
    return (f"jobs dashboard {PREFIX}: no password (DASHBOARD_PASSWORD unset), so loopback only:"
            " a loopback peer, a loopback Host and no forwarding header; behind a reverse"
            " proxy set DASHBOARD_PASSWORD")


def _local_only(request: web.Request) -> None:
    proxied = any(name in request.headers for name in PROXY_HEADERS)
    if proxied or not _is_loopback(request.remote):
        raise web.HTTPForbidden(
            text="The jobs dashboard answers only local requests; set "
            "DASHBOARD_PASSWORD to open it to others."
        )
    if not is_loopback_host(request.headers.get("Host")):
        logger.info("refused %s %s from %s: Host %r is not a loopback name", request.method,
                    request.path, request.remote, request.headers.get("Host", "")[:100])
        raise web.HTTPForbidden(
            text="Without DASHBOARD_PASSWORD the jobs dashboard answers only requests to"
            " localhost, 127.0.0.1 or [::1]."
        )
    request[ACCESS] = "loopback"


def _with_password(request: web.Request, password: str) -> None:
    failures, client = request.app[AUTH_FAILURES], client_key(request)
    wait = failures.blocked_for(client)
    if wait:
        raise web.HTTPTooManyRequests(
            text="Too many wrong passwords from your address. Try again later.",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    header = request.headers.get("Authorization")
    if header is None or not _password_ok(header, password):
        if header is not None:  # a browser's first request carries none: not a failure
            failures.fail(client)
            logger.info("dashboard: wrong password from %s for %s %s", request.remote,
                        request.method, request.path)
        raise web.HTTPUnauthorized(
            text="Log in to see the jobs dashboard.", headers={"WWW-Authenticate": REALM}
        )
    request[ACCESS] = "password"


async def check_dashboard_access(request: web.Request) -> None:
    """403 for /jobs from afar without DASHBOARD_PASSWORD; 401 without the password; 429
    after too many wrong ones."""
    path = request.path
    if path == PREFIX or path.startswith(PREFIX + "/") or path == METRICS_PATH:
        password = request.app[CONFIG].dashboard_password
        if password:
            _with_password(request, password)
        else:
            _local_only(request)
