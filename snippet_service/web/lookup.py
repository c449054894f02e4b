"""The snippet a request names, read as that reader may read it (a burn-after-reading
snippet is deleted by its first reader other than its owner), and its rendered bodies in
the page cache: shared by the HTML views, the terminal answers and the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from snippet_service import db, owners, snippets
from snippet_service.web.middlewares import NO_STORE
from snippet_service.web.owner import is_owner, presented_token
from snippet_service.web.typedefs import DB, PAGES, REDIS


def snippet_id(request: web.Request) -> str:
    """The id in the URL; anything that cannot be a stored id is a 404."""
    raw = request.match_info["id"]
    if not db.ID_PATTERN.fullmatch(raw):
        raise web.HTTPNotFound(text="No such snippet.")
    return raw


def snippet_url(request: web.Request, name: str, ident: str) -> str:
    """The path of one of a snippet's routes (the id is URL-safe: nothing to quote, so no
    url_for, which costs more)."""
    return request.app.router[name].canonical.replace("{id}", ident)


def page_url(request: web.Request, ident: str) -> str:
    """The snippet page's whole address, as the request reached us."""
    return str(request.url.origin()) + snippet_url(request, "snippet", ident)


@dataclass(frozen=True)
class Reading:
    """A snippet as one request reads it."""

    snippet: db.Snippet
    owner: bool = False  # the request carries its owner token
    burned: bool = False  # this read was its one reading: it is deleted now

    @property
    def shareable(self) -> bool:
        """Whether its rendering may serve everyone: finished, not a burn-after-reading
        snippet, and read by someone who is not its owner."""
        snippet = self.snippet
        return (snippet.status != db.PENDING and not snippet.burn_after_reading
                and not self.owner)

    @property
    def withheld(self) -> bool:
        """A burn-after-reading snippet that this reader (not its owner) has not read."""
        return self.snippet.burn_after_reading and not self.owner and not self.burned


async def read(request: web.Request, ident: str, burn: bool = True) -> Reading:
    """The snippet, for this request: its owner reads it as it is; anyone else reading
    a burn-after-reading snippet deletes it (``burn=False``, or a HEAD request: just
    look, and the reading is ``withheld``). Raises SnippetNotFound."""
    snippet = await db.get_snippet(request.app[DB], ident)
    owner = is_owner(request, snippet)
    if snippet.burn_after_reading:
        request[NO_STORE] = True  # no cache on the way keeps its one view
        if burn and not owner and request.method != "HEAD":
            taken = await snippets.burn(request.app[DB], request.app[REDIS], ident)
            request.app[PAGES].evict(ident)
            request.app[PAGES].note_burned(ident)
            return Reading(taken, burned=True)
    return Reading(snippet, owner)


def cached(request: web.Request, kind: str, ident: str) -> bytes | None:
    """The cached body of this kind, unless there is none or this request is the
    snippet's owner's (who is shown their own controls). A token that is not the owner's
    gets the cached body like everyone else."""
    entry = request.app[PAGES].entry(kind, ident)
    if entry is None or owners.owns(entry.owner_hash, presented_token(request, ident)):
        return None
    return entry.body


def keep(request: web.Request, kind: str, reading: Reading, body: bytes,
         evictions: int) -> None:
    """Cache a body rendered from ``reading`` (read when ``evictions`` was current) if it
    may serve everyone."""
    if reading.shareable:
        snippet = reading.snippet
        expires_at = snippet.expires_at.timestamp() if snippet.expires_at else None
        request.app[PAGES].put(kind, snippet.id, body, expires_at, evictions,
                               snippet.owner_hash)


async def cached_body(request: web.Request, kind: str, render: Callable[[Reading], bytes],
                      burn: bool = True) -> bytes:
    """The rendered body of the snippet in the URL; a shareable one comes from the page
    cache (only if nothing was evicted while it was read and rendered). Requests without
    an owner token for the same fragment or JSON at the same time share one read and one
    rendering. ``burn``: as :func:`read`."""
    ident, pages = snippet_id(request), request.app[PAGES]
    body = cached(request, kind, ident)
    if body is not None:
        return body
    ran = False

    async def load() -> bytes:
        nonlocal ran
        ran = True
        evictions = pages.evictions
        reading = await read(request, ident, burn)
        body = render(reading)
        keep(request, kind, reading, body, evictions)
        return body

    if presented_token(request, ident) is not None or request.method == "HEAD":
        return await load()
    body = await pages.shared(kind, ident, load)
    if not ran and pages.was_burned(ident):  # another request's reading was its one view
        raise db.SnippetNotFound(ident)
    return body
