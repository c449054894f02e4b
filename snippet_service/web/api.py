"""The JSON API: create a snippet and read its state."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from snippet_service import db, snippets
from snippet_service.bulk import Draft
from snippet_service.web.forms import validate_snippet
from snippet_service.web.lookup import cached_body, snippet_id
from snippet_service.web.options import parse_expiry, parse_highlight_in
from snippet_service.web.reasons import api_error
from snippet_service.web.typedefs import CONFIG, DB, INTAKE, LANGUAGES, PAGES, REDIS

logger = logging.getLogger("snippet_service.web.api")

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def json_time(moment: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 UTC with milliseconds and "Z"."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def snippet_json(request: web.Request, snippet: db.Snippet) -> dict[str, Any]:
    """A snippet as the API shows it, with its URLs."""
    router, ident = request.app.router, str(snippet.id)

    def url(name: str) -> str:  # the id is digits: nothing to quote, so no url_for
        return router[name].canonical.replace("{id}", ident)

    return {
        "id": snippet.id,
        "language": snippet.language,
        "status": snippet.status,
        "code": snippet.plain_code,
        "highlighted_code": snippet.highlighted_code,
        "error": api_error(snippet.error),  # the full text is on the dashboard
        "created_at": json_time(snippet.created_at),
        "updated_at": json_time(snippet.updated_at),
        "revision": snippet.revision,
        "highlight_at": json_time(snippet.highlight_at),
        "expires_at": json_time(snippet.expires_at),
        "urls": {
            "html": url("snippet"),
            "raw": url("snippet_raw"),
            "api": url("api_snippet"),
        },
    }


async def read_json(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 415/400 error."""
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="Send the snippet as application/json.")
    try:
        data = json.loads(await request.read())
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="The body is not valid UTF-8.") from None
    except ValueError:
        raise web.HTTPBadRequest(text="The body is not valid JSON.") from None
    except RecursionError:
        raise web.HTTPBadRequest(text="The body's JSON is nested too deeply.") from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text="The body must be a JSON object.")
    return data


async def create(request: web.Request) -> web.Response:
    data = await read_json(request)
    form = validate_snippet(
        data, request.app[LANGUAGES], request.app[CONFIG].max_snippet_bytes, code_field="code"
    )
    expires_in = parse_expiry(data, form.errors)
    highlight_in = parse_highlight_in(data, form.errors)
    if not form.valid:
        return invalid(form.errors)
    snippet = await request.app[INTAKE].create(
        Draft(form.language, form.plain_code, highlight_in, expires_in)
    )
    body = snippet_json(request, snippet)
    return web.json_response(body, status=201, headers={"Location": body["urls"]["api"]})


async def show(request: web.Request) -> web.Response:
    """A snippet as JSON."""

    def render(snippet: db.Snippet) -> bytes:
        return json.dumps(snippet_json(request, snippet)).encode()

    return web.Response(body=await cached_body(request, "json", render), headers=JSON_HEADERS)


async def rehighlight(request: web.Request) -> web.Response:
    """``POST /api/snippets/{id}/highlight`` with an optional ``{"language": …}``: highlight
    again as a new revision (a new job id, never blocked by the old job's kept result)."""
    ident = snippet_id(request)
    # No body at all is fine; a form's content type (what another site can send) is not.
    # The body may have been read already (the rate limit reads it): read() returns it again.
    bare = not await request.read() and request.content_type in (
        "application/octet-stream", "application/json")
    data = {} if bare else await read_json(request)
    language = data.get("language")
    if language is not None and (
        not isinstance(language, str) or language not in request.app[LANGUAGES]
    ):
        return invalid({"language": "This language is not supported."})
    snippet = await snippets.rehighlight(request.app[DB], request.app[REDIS], ident, language)
    request.app[PAGES].evict(ident)  # the done channel tells the other web processes
    return web.json_response(snippet_json(request, snippet), status=202)


def invalid(errors: dict[str, str]) -> web.Response:
    return web.json_response(
        {"error": " ".join(errors.values()), "status": 400, "fields": errors}, status=400
    )
