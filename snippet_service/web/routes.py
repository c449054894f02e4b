"""Every route of the web app, declared and named in one place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from snippet_service.web import api, health, manage, stream, text, views

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", views.index, name="index")
    router.add_put("/", text.upload, name="upload")
    router.add_post("/snippets", views.create, name="create_snippet")
    router.add_get("/snippets/{id}", views.show, name="snippet")
    router.add_get("/snippets/{id}/raw", views.raw, name="snippet_raw")
    router.add_get("/snippets/{id}/download", text.download, name="snippet_download")
    router.add_get("/snippets/{id}/events", stream.events, name="snippet_events")
    router.add_get("/snippets/{id}/code", views.code, name="snippet_code")
    router.add_get("/snippets/{id}/edit", manage.edit, name="snippet_edit")
    router.add_get("/snippets/{id}/fork", manage.fork, name="snippet_fork")
    router.add_post("/snippets/{id}/delete", manage.delete, name="snippet_delete")
    router.add_post("/snippets/{id}/language", manage.change_language, name="snippet_language")
    router.add_post("/snippets/{id}/read", views.reveal, name="snippet_read")
    router.add_get("/highlight.css", views.highlight_css, name="highlight_css")
    router.add_get("/api/snippets", api.index, name="api_snippets")
    router.add_post("/api/snippets", api.create, name="api_create_snippet")
    router.add_get("/api/snippets/{id}", api.show, name="api_snippet")
    router.add_delete("/api/snippets/{id}", api.delete, name="api_delete_snippet")
    router.add_post("/api/snippets/{id}/highlight", api.rehighlight, name="api_rehighlight")
    router.add_get("/healthz", health.healthz, name="healthz")
    router.add_static("/static/", STATIC_DIR, name="static")
    # curl -T file.py http://host/ puts to /file.py: last, so no other route is shadowed
    uploads = PutOnly("/{filename}", router, name="upload_named")
    router.register_resource(uploads)
    uploads.add_route("PUT", text.upload)


class PutOnly(web.DynamicResource):
    """A resource that answers only PUT, and not for the first part of another route's
    path: for anything else it is not there at all, so ``GET /nowhere`` stays a 404 (not
    a 405 naming PUT) and ``PUT /snippets`` a 405."""

    def __init__(self, path: str, router: web.UrlDispatcher, *, name: str) -> None:
        super().__init__(path, name=name)
        self._router = router
        self._taken: frozenset[str] | None = None

    async def resolve(self, request: web.Request) -> Any:
        if request.method != "PUT" or request.path.strip("/") in self._others():
            return None, set()
        return await super().resolve(request)

    def _others(self) -> frozenset[str]:
        if self._taken is None:  # every route is known by the first request
            self._taken = frozenset(
                resource.canonical.strip("/").split("/")[0]
                for resource in self._router.resources() if resource is not self)
        return self._taken
