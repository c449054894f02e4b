"""Every route of the web app, declared and named in one place."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from snippet_service.web import api, health, views

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/", views.index, name="index")
    router.add_post("/snippets", views.create, name="create_snippet")
    router.add_get("/snippets/{id}", views.show, name="snippet")
    router.add_get("/snippets/{id}/raw", views.raw, name="snippet_raw")
    router.add_get("/snippets/{id}/events", views.events, name="snippet_events")
    router.add_get("/snippets/{id}/code", views.code, name="snippet_code")
    router.add_get("/highlight.css", views.highlight_css, name="highlight_css")
    router.add_post("/api/snippets", api.create, name="api_create_snippet")
    router.add_get("/api/snippets/{id}", api.show, name="api_snippet")
    router.add_post("/api/snippets/{id}/highlight", api.rehighlight, name="api_rehighlight")
    router.add_get("/healthz", health.healthz, name="healthz")
    router.add_static("/static/", STATIC_DIR, name="static")
