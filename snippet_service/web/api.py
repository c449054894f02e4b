"""The JSON API: create a snippet, read it, list the public ones; its owner (with
``Authorization: Bearer <owner token>``) highlights it again or deletes it."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from snippet_service import db
from snippet_service.web import changes
from snippet_service.web.detect import language_name
from snippet_service.web.lookup import Reading, cached_body, page_url, snippet_id, snippet_url
from snippet_service.web.reasons import api_error
from snippet_service.web.typedefs import LANGUAGES
from snippet_service.web.views import public_page

logger = logging.getLogger("snippet_service.web.api")

JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}


def json_time(moment: datetime | None) -> str | None:
    """A time as the API writes it: ISO 8601 UTC with milliseconds and "Z"."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def snippet_json(request: web.Request, snippet: db.Snippet) -> dict[str, Any]:
    """A snippet as the API shows it, with its URLs."""
    def url(name: str) -> str:
        return snippet_url(request, name, snippet.id)

    return {
        "id": snippet.id,
        "title": snippet.title,
        "language": snippet.language,
        "language_name": language_name(snippet.language),
        "detected": snippet.detected,
        "visibility": snippet.visibility,
        "burn_after_reading": snippet.burn_after_reading,
        "parent_id": snippet.parent_id,
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
            "download": url("snippet_download"),
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
    submitted = await changes.create(request, await read_json(request), "code",
                                     deferrable=True)
    if submitted.snippet is None:
        return invalid(submitted.form.errors)
    body = snippet_json(request, submitted.snippet)
    body["url"] = page_url(request, submitted.snippet.id)
    body["owner_token"] = submitted.token  # shown this once: only its hash is kept
    return web.json_response(body, status=201, headers={"Location": body["urls"]["api"]})


async def show(request: web.Request) -> web.Response:
    """A snippet as JSON (a burn-after-reading one is deleted by its first reader other
    than its owner)."""

    def render(reading: Reading) -> bytes:
        return json.dumps(snippet_json(request, reading.snippet)).encode()

    return web.Response(body=await cached_body(request, "json", render), headers=JSON_HEADERS)


async def index(request: web.Request) -> web.Response:
    """``GET /api/snippets?page=N``: the public snippets, newest first, PAGE_SIZE a page."""
    page, listed, has_next = await public_page(request)
    items = [{"id": item.id, "title": item.title, "language": item.language,
              "status": item.status, "excerpt": item.excerpt,
              "created_at": json_time(item.created_at),
              "url": snippet_url(request, "api_snippet", item.id)}
             for item in listed]
    return web.json_response({"snippets": items, "page": page,
                              "next_page": page + 1 if has_next else None})


async def delete(request: web.Request) -> web.Response:
    """``DELETE /api/snippets/{id}`` with the owner token: 204, 403 without it."""
    await changes.delete(request, snippet_id(request))
    return web.Response(status=204)


async def rehighlight(request: web.Request) -> web.Response:
    """``POST /api/snippets/{id}/highlight`` with an optional ``{"language": …}``: highlight
    again as a new revision (a new job id, never blocked by the old job's kept result).
    Only the owner may: ``Authorization: Bearer <owner token>``."""
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
    snippet = await changes.rehighlight(request, ident, language)
    return web.json_response(snippet_json(request, snippet), status=202)


def invalid(errors: dict[str, str]) -> web.Response:
    return web.json_response(
        {"error": " ".join(errors.values()), "status": 400, "fields": errors}, status=400
    )
