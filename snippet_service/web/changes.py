"""Changing snippets from a request, the same way for the form, the JSON API and ``PUT``
uploads: create one (checked, its language detected, its owner token made), highlight it
again or delete it (its owner only); each change drops this process's cached pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from snippet_service import db, snippets
from snippet_service.web.forms import SnippetForm, build_draft, validate_snippet
from snippet_service.web.lookup import read
from snippet_service.web.options import (
    parse_expiry,
    parse_flag,
    parse_highlight_in,
    parse_visibility,
)
from snippet_service.web.owner import require_owner
from snippet_service.web.typedefs import CONFIG, DB, INTAKE, LANGUAGES, PAGES, REDIS


@dataclass
class Submitted:
    """What a submission gave: the checked form (its ``errors`` when it is not valid), or
    the new snippet and its owner token."""

    form: SnippetForm
    visibility: str
    burn: bool
    snippet: db.Snippet | None = None
    token: str = ""


async def create(request: web.Request, data: Mapping[str, object],
                 code_field: str = "plain_code", deferrable: bool = False) -> Submitted:
    """Create a snippet from submitted fields (``language`` (``auto`` detects it),
    ``code_field``, ``title``, ``parent``, ``expires_in``, ``visibility``,
    ``burn_after_reading``; with ``deferrable``, ``highlight_in``)."""
    app = request.app
    form = validate_snippet(data, app[LANGUAGES], app[CONFIG].max_snippet_bytes, code_field)
    expires_in = parse_expiry(data, form.errors)
    highlight_in = parse_highlight_in(data, form.errors) if deferrable else 0.0
    visibility = parse_visibility(data, form.errors)
    burn = parse_flag(data, "burn_after_reading", form.errors)
    if not form.valid:
        return Submitted(form, visibility, burn)
    form.parent = await _parent_link(app[DB], form.parent, visibility)
    draft, token = await build_draft(form, app[LANGUAGES], highlight_in=highlight_in,
                                     expires_in=expires_in, visibility=visibility, burn=burn)
    return Submitted(form, visibility, burn, await app[INTAKE].create(draft), token)


async def _parent_link(database: db.Database, parent: str | None,
                       visibility: str) -> str | None:
    """The parent a new snippet links to: none for a parent that is gone, nor for an
    unlisted parent of a public snippet (its link would publish the parent's)."""
    if parent is None:
        return None
    try:
        found = await db.get_snippet(database, parent)
    except db.SnippetNotFound:
        return None
    if visibility == db.PUBLIC and found.visibility != db.PUBLIC:
        return None
    return parent


async def rehighlight(request: web.Request, ident: str,
                      language: str | None = None) -> db.Snippet:
    """The owner highlights the snippet again (optionally in another language): 403 for
    anyone else, SnippetNotFound for an unknown id."""
    require_owner(request, (await read(request, ident, burn=False)).snippet)
    snippet = await snippets.rehighlight(request.app[DB], request.app[REDIS], ident, language)
    request.app[PAGES].evict(ident)  # the done channel tells the other web processes
    return snippet


async def delete(request: web.Request, ident: str) -> None:
    """The owner deletes the snippet: 403 for anyone else, SnippetNotFound for an unknown
    id."""
    require_owner(request, (await read(request, ident, burn=False)).snippet)
    await snippets.delete(request.app[DB], request.app[REDIS], ident)
    request.app[PAGES].evict(ident)
