"""A per-client limit on creating snippets (form and API), counted in Redis so that every
web process shares it. Without Redis the limit is not enforced: requests are let through
and the outage is logged."""

from __future__ import annotations

import functools
import ipaddress
import logging
import math

from aiohttp import web
from redis.exceptions import RedisError

from snippet_service.middlewares import read_body
from snippet_service.typedefs import CONFIG, HITS

logger = logging.getLogger("snippet_service.ratelimit")

CREATION_ROUTES = frozenset({"create_snippet", "api_create_snippet", "api_rehighlight"})


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


async def check_rate_limit(request: web.Request) -> None:
    """429 with Retry-After once a client has created RATE_LIMIT_PER_MINUTE snippets."""
    limit = request.app[CONFIG].rate_limit_per_minute
    if limit and request.method == "POST" and request.match_info.route.name in CREATION_ROUTES:
        await read_body(request)  # a body over the size limit is a 413 and never counts
        client = client_key(request)
        try:
            count, seconds_left = await request.app[HITS].hit(client)
        except (TimeoutError, RedisError, OSError) as exc:
            logger.warning("rate limit not checked for %s, request allowed: Redis: %r",
                           client, exc)
        else:
            if count > limit:
                retry_after = max(1, math.ceil(seconds_left))
                raise web.HTTPTooManyRequests(
                    text=f"Too many new snippets from your address (the limit is {limit} a"
                    f" minute). Try again in {retry_after} seconds.",
                    headers={"Retry-After": str(retry_after)},
                )
