"""A misbehaving stand-in for the highlighter: `python -m tests.fake_highlighter PORT`.

It lists ``python`` and ``refused``; ``refused`` always gets a 400 with a reason. The code
``__name__`` of a key in HOSTILE or HUGE gets that answer instead of a highlight:

- HOSTILE: 200 text/html with markup that must never reach a page (script, event
  handlers, ``javascript:`` links, breaking out of ``<pre>``, ``<svg><style>``, ids of the
  page's own elements);
- ``__wrong_type__``: 200 application/json; ``__not_utf8__``: 200 text/html, not UTF-8;
  ``__latin1__``: 200 ``text/html; charset=iso-8859-1``;
- HUGE: a 50 MB body, streamed chunk by chunk: ``__huge_chunked__`` chunked without a
  Content-Length, ``__huge_unframed__`` with neither (it ends when the connection closes),
  ``__huge_declared__`` with its true Content-Length, ``__huge_lying__`` claiming
  LYING_LENGTH bytes and sending 50 MB anyway.
"""

from __future__ import annotations

import html
import sys

from aiohttp import web

REFUSAL = "language 'refused' is not allowed here"

HOSTILE = {
    "script": '<div class="highlight"><pre><span class="k">ok</span>'
              '<script>alert("script")</script></pre></div>',
    "onerror": '<div class="highlight"><pre><img src="x" onerror="alert(\'onerror\')">'
               '<span class="k" onmouseover="alert(\'hover\')">hover</span></pre></div>',
    "javascript": '<div class="highlight"><pre><a href="javascript:alert(\'link\')">'
                  '<span class="n">link</span></a></pre></div>',
    "breakout": '<div class="highlight"><pre><span class="k">x</span></pre></div>'
                '</div></section><script>alert("breakout")</script><pre>',
    "spoof_id": '<div class="highlight" id="snippet-body"><pre><span class="k" id="live-region">'
                'spoof</span></pre></div>',
    "svg_style": '<div class="highlight"><pre><svg><style>body{display:none}</style>'
                 '<script>alert("svg")</script></svg><style>*{color:red}</style>'
                 '<span class="s">styled</span></pre></div>',
}
HUGE_BYTES = 50 * 1024 * 1024
HUGE_CHUNK = b'<span class="x">' + b"A" * (64 * 1024 - 23) + b"</span>\n"
LYING_LENGTH = 100
LYING_PREFIX = b'<div class="highlight"><pre><span class="x">lying</span></pre></div>'
LYING_PREFIX += b" " * (LYING_LENGTH - len(LYING_PREFIX))
HUGE = ("huge_chunked", "huge_unframed", "huge_declared", "huge_lying")


class RawResponse(web.StreamResponse):
    """Writes exactly what it is given, whatever its Content-Length header says."""

    _length_check = False


async def huge(request: web.Request, kind: str) -> web.StreamResponse:
    response = RawResponse() if kind in ("huge_unframed", "huge_lying") else web.StreamResponse()
    response.content_type = "text/html"
    if kind == "huge_chunked":
        response.enable_chunked_encoding()
    elif kind == "huge_declared":
        response.content_length = HUGE_BYTES
    elif kind == "huge_lying":
        response.headers["Content-Length"] = str(LYING_LENGTH)
    if kind in ("huge_unframed", "huge_lying"):
        response.force_close()
    try:
        await response.prepare(request)
        sent = 0
        if kind == "huge_lying":  # the framed answer and the first bytes past it at once
            await response.write(LYING_PREFIX + HUGE_CHUNK)
            sent = len(LYING_PREFIX) + len(HUGE_CHUNK)
        while sent < HUGE_BYTES:
            chunk = HUGE_CHUNK[: HUGE_BYTES - sent]
            await response.write(chunk)
            sent += len(chunk)
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client stopped reading, as it should
    return response


async def highlight(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    lang, code = str(form.get("lang", "")), str(form.get("code", ""))
    magic = code.strip("_") if code.startswith("__") and code.endswith("__") else ""
    if lang == "refused":
        return web.Response(status=400, text=REFUSAL)
    if magic in HOSTILE:
        return web.Response(text=HOSTILE[magic], content_type="text/html")
    if magic in HUGE:
        return await huge(request, magic)
    if magic == "wrong_type":
        return web.json_response({"html": "<span>json</span>"})
    if magic == "not_utf8":
        return web.Response(body=b'<div class="highlight"><pre>\xff\xfe</pre></div>',
                            content_type="text/html")
    if magic == "latin1":
        return web.Response(body="<pre>caf\u00e9</pre>".encode("latin-1"),
                            content_type="text/html", charset="iso-8859-1")
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
