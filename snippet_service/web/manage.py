"""What a snippet's owner does from its page (edit, delete, highlight as another language)
and what anyone may do (fork).

Edits do not change a snippet: saving an edit, like a fork, creates a new snippet that
links to its parent, so a link someone shared always shows what they saw (see README,
"Edit and fork")."""

from __future__ import annotations

import aiohttp_jinja2
from aiohttp import web

from snippet_service.web import changes
from snippet_service.web.forms import SnippetForm
from snippet_service.web.lookup import read, snippet_id
from snippet_service.web.owner import cookie_name, require_owner
from snippet_service.web.typedefs import LANGUAGES
from snippet_service.web.views import form_context, read_form

NO_FORK = ("A burn-after-reading snippet can be read only once: it cannot be forked"
           " by anyone but its owner.")


async def _form_page(request: web.Request, mode: str) -> web.Response:
    reading = await read(request, snippet_id(request), burn=False)
    snippet = reading.snippet
    if mode == "edit":
        require_owner(request, snippet)
    elif snippet.burn_after_reading and not reading.owner:
        raise web.HTTPForbidden(text=NO_FORK)
    form = SnippetForm(language=snippet.language, plain_code=snippet.plain_code,
                       title=snippet.title, parent=snippet.id)
    context = {**form_context(request, form, visibility=snippet.visibility,
                              burn=snippet.burn_after_reading),
               "mode": mode, "parent_id": snippet.id}
    response = aiohttp_jinja2.render_template("edit.html", request, context)
    response.headers["Cache-Control"] = "no-store"
    return response


async def edit(request: web.Request) -> web.Response:
    """``GET /snippets/{id}/edit``: the owner's form, pre-filled; saving creates a new
    snippet linked to this one."""
    return await _form_page(request, "edit")


async def fork(request: web.Request) -> web.Response:
    """``GET /snippets/{id}/fork``: anyone's copy of the form, pre-filled."""
    return await _form_page(request, "fork")


async def delete(request: web.Request) -> web.Response:
    """``POST /snippets/{id}/delete`` (the owner's cookie and the form's CSRF token)."""
    ident = snippet_id(request)
    await changes.delete(request, ident)
    response = web.Response(status=303, headers={"Location": "/?deleted=" + ident})
    response.del_cookie(cookie_name(ident), path=f"/snippets/{ident}")
    return response


async def change_language(request: web.Request) -> web.Response:
    """``POST /snippets/{id}/language``: the owner highlights the snippet again in another
    language (a new revision; a detected language becomes a chosen one)."""
    ident = snippet_id(request)
    fields = await read_form(request)
    language = fields.get("language", "")
    if language not in request.app[LANGUAGES]:
        raise web.HTTPBadRequest(text="This language is not supported.")
    await changes.rehighlight(request, ident, language)
    location = request.app.router["snippet"].url_for(id=ident)
    return web.Response(status=303, headers={"Location": str(location)})
