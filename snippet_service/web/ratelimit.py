"""The guard of the creation routes (form and API): a size check before the body is read,
free disk space, and per-client limits on snippets and bytes a minute and bytes a day,
counted in Redis so that every web process shares them. Without Redis the limits are not
enforced: requests are let through and the outage is logged."""

from __future__ import annotations

import functools
import ipaddress
import logging
import math

from aiohttp import web
from redis.exceptions import RedisError

from snippet_service.config import Config
from snippet_service.web.disk import disk_low
from snippet_service.web.hits import Hit, Refusal, Verdict
from snippet_service.web.middlewares import read_body
from snippet_service.web.typedefs import CONFIG, HITS

logger = logging.getLogger("snippet_service.web.ratelimit")

CREATION_ROUTES = frozenset({"create_snippet", "api_create_snippet", "api_rehighlight",
                             "upload", "upload_named", "snippet_language"})
DISK_LOW_MESSAGE = ("The server is low on disk space, so it cannot store new snippets right"
                    " now. Try again later.")


def client_key(request: web.Request) -> str:
    """Who is counted: the peer's address (an IPv6 client by its /64 network)."""
    return _client_key(request.remote or "")


@functools.lru_cache(maxsize=4096)
def _client_key(remote: str) -> str:
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def limited(config: Config) -> bool:
    return bool(config.rate_limit_per_minute or config.rate_limit_bytes_per_minute
                or config.daily_bytes_per_client)


async def check_rate_limit(request: web.Request) -> None:
    """For a creation route, in this order: 413 for a declared body over the size limit,
    507 while disk space is low, 429 with Retry-After once the client is over a limit;
    then the body is read (and kept for the handler). A declared body is counted by its
    Content-Length before it is read; a chunked one is read first, then counted."""
    if (request.method not in ("POST", "PUT")
            or request.match_info.route.name not in CREATION_ROUTES):
        return
    config = request.app[CONFIG]
    size = request.content_length
    if size is not None and size > request.client_max_size:
        raise web.HTTPRequestEntityTooLarge(request.client_max_size, size)
    if disk_low(config):
        raise web.HTTPInsufficientStorage(text=DISK_LOW_MESSAGE)
    if limited(config):
        if size is None:
            await read_body(request)  # over the size limit: a 413 that never counts
            size = request.content.total_bytes
        client = client_key(request)
        hit = Hit(client, size, config.rate_limit_per_minute,
                  config.rate_limit_bytes_per_minute, config.daily_bytes_per_client)
        try:
            verdict = await request.app[HITS].hit(hit)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("rate limit not checked for %s, request allowed: Redis: %r",
                           client, exc)
        else:
            if verdict.refusal is not Refusal.NONE:
                raise too_many(config, verdict)
    await read_body(request)


def too_many(config: Config, verdict: Verdict) -> web.HTTPTooManyRequests:
    """The 429 for a refused request, with Retry-After and the limit in words."""
    retry_after = max(1, math.ceil(verdict.seconds_left))
    if verdict.refusal is Refusal.SNIPPETS_PER_MINUTE:
        what = (f"Too many new snippets from your address (the limit is"
                f" {config.rate_limit_per_minute} a minute).")
    elif verdict.refusal is Refusal.BYTES_PER_MINUTE:
        what = (f"Too much code from your address (the limit is"
                f" {size_text(config.rate_limit_bytes_per_minute)} a minute).")
    else:
        what = (f"Your address has used its daily budget for new snippets"
                f" ({size_text(config.daily_bytes_per_client)} a day).")
    return web.HTTPTooManyRequests(
        text=f"{what} Try again in {wait_text(retry_after)}.",
        headers={"Retry-After": str(retry_after)},
    )


def size_text(size: int) -> str:
    """Bytes for people: 4 MiB, 1.5 MiB, 300 KiB, 100 bytes."""
    for unit, scale in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def wait_text(seconds: int) -> str:
    """A wait for people: seconds up to two minutes, then minutes, then hours."""
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 2 * 3600:
        return f"{math.ceil(seconds / 60)} minutes"
    return f"{math.ceil(seconds / 3600)} hours"
