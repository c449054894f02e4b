"""The snippet a request names, and its rendered body through the page cache: shared by
the HTML views and the JSON API."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from snippet_service import db
from snippet_service.web.typedefs import DB, PAGES

MAX_ID = 2**63 - 1


def snippet_id(request: web.Request) -> int:
    """The id in the URL; anything that cannot be a stored id is a 404."""
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or int(raw) > MAX_ID:
        raise web.HTTPNotFound(text="No such snippet.")
    return int(raw)


async def cached_body(
    request: web.Request, kind: str, render: Callable[[db.Snippet], bytes]
) -> bytes:
    """The rendered body of the snippet in the URL; a finished snippet's comes from the
    page cache (only if nothing was evicted while it was read and rendered). Requests
    for the same fragment or JSON at the same time share one read and one rendering."""
    ident, pages = snippet_id(request), request.app[PAGES]
    body = pages.get(kind, ident)
    if body is not None:
        return body

    async def load() -> bytes:
        evictions = pages.evictions
        snippet = await db.get_snippet(request.app[DB], ident)
        body = render(snippet)
        if snippet.status != db.PENDING:
            expires_at = snippet.expires_at.timestamp() if snippet.expires_at else None
            pages.put(kind, ident, body, expires_at, evictions)
        return body

    if kind == "page":  # a pending page carries its own request's script nonce
        return await load()
    return await pages.shared(kind, ident, load)
