"""The JSON API: create a snippet and read its state."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from snippet_service import db
from snippet_service.forms import validate_snippet
from snippet_service.typedefs import CONFIG, DB, LANGUAGES
from snippet_service.views import snippet_id, store_and_enqueue


def snippet_json(request: web.Request, snippet: db.Snippet) -> dict[str, Any]:
    """A snippet as the API shows it, with its URLs."""
    router, ident = request.app.router, str(snippet.id)
    return {
        "id": snippet.id,
        "language": snippet.language,
        "status": snippet.status,
        "code": snippet.plain_code,
        "highlighted_code": snippet.highlighted_code,
        "error": snippet.error,
        "created_at": snippet.created_at,
        "updated_at": snippet.updated_at,
        "urls": {
            "html": str(router["snippet"].url_for(id=ident)),
            "raw": str(router["snippet_raw"].url_for(id=ident)),
            "api": str(router["api_snippet"].url_for(id=ident)),
        },
    }


async def create(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="Send the snippet as application/json.")
    try:
        data = json.loads(await request.read())
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="The body is not valid UTF-8.") from None
    except ValueError:
        raise web.HTTPBadRequest(text="The body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="The body must be a JSON object.")
    form = validate_snippet(
        data, request.app[LANGUAGES], request.app[CONFIG].max_snippet_bytes, code_field="code"
    )
    if not form.valid:
        return web.json_response(
            {"error": " ".join(form.errors.values()), "fields": form.errors}, status=400
        )
    snippet = await store_and_enqueue(request, form)
    body = snippet_json(request, snippet)
    return web.json_response(body, status=201, headers={"Location": body["urls"]["api"]})


async def show(request: web.Request) -> web.Response:
    snippet = await db.get_snippet(request.app[DB], snippet_id(request))
    return web.json_response(snippet_json(request, snippet))
