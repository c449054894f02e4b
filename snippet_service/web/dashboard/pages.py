"""What every dashboard page's context starts from, and its page number."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from snippet_service.web.typedefs import CONFIG


def page_number(request: web.Request) -> int:
    """``?page=`` as a number from 1 (anything else is page 1)."""
    raw = request.query.get("page", "1")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < int(raw) < 1_000_000 else 1


def base_context(request: web.Request, tab: str) -> dict[str, Any]:
    """The template context every dashboard page starts from."""
    return {"request": request, "tab": tab, "now": time.time(),
            "queue": request.app[CONFIG].queue_name}
