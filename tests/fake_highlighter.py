"""A misbehaving stand-in for the highlighter: `python -m tests.fake_highlighter PORT`.

It lists ``python`` and ``refused``; ``refused`` always gets a 400 with a reason.
"""

from __future__ import annotations

import html
import sys

from aiohttp import web

REFUSAL = "language 'refused' is not allowed here"


async def highlight(request: web.Request) -> web.Response:
    form = await request.post()
    lang, code = str(form.get("lang", "")), str(form.get("code", ""))
    if lang == "refused":
        return web.Response(status=400, text=REFUSAL)
    return web.Response(
        text=f'<div class="highlight"><pre><span class="fake">{html.escape(code)}</span></pre>'
        "</div>",
        content_type="text/html",
    )


async def languages(request: web.Request) -> web.Response:
    return web.json_response([
        {"name": "Python", "aliases": ["python", "py"]},
        {"name": "Refused", "aliases": ["refused"]},
    ])


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/", highlight)
    app.router.add_get("/languages", languages)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(sys.argv[1]), print=None)
