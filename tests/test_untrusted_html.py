"""The highlighter's answer is untrusted: only Pygments' elements with their class are
stored and rendered, and an answer that is too big, not HTML or not UTF-8 fails the
snippet with the reason, while the worker stays up and small."""

from __future__ import annotations

import asyncio
import re
import sqlite3

import aiohttp
import pytest
import redis
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.highlighter import render
from tasks.client import max_response_bytes
from tasks.sanitize import TAGS, clean_html
from tests.fake_highlighter import HOSTILE, HUGE, LYING_PREFIX
from tests.helpers import HTML, create_via_api, create_via_form, peak_rss, wait_for_snippet
from tests.servers import Stack

WORKER_RSS_LIMIT = 150 * 1024 * 1024
RESPONSE_CAP = max_response_bytes(Config().max_snippet_bytes)  # what fake_stack reads
FORBIDDEN = ("<script", "alert(", "onerror", "onmouseover", "javascript:", "<svg", "<style",
             "<img", "<a ", "href=")


def stored_html(stack: Stack, snippet_id: str) -> str | None:
    with sqlite3.connect(stack.db_path) as conn:
        row = conn.execute("SELECT highlighted_code FROM snippets WHERE slug = ?",
                           (snippet_id,)).fetchone()
    return None if row is None else row[0]


# The allowlist itself, against what Pygments writes.

FORMATTER_OPTIONS: list[dict[str, object]] = [
    {}, {"linenos": "table"}, {"linenos": "inline"}, {"wrapcode": True}, {"hl_lines": [1]},
    {"filename": "a.py"},
]


@pytest.mark.parametrize("options", FORMATTER_OPTIONS)
def test_pygments_output_passes_unchanged(options: dict[str, object]) -> None:
    code = 'def f(x):\n    return "<script>alert(1)</script>"  # <b>&amp;\n' * 3
    html = highlight(code, get_lexer_by_name("python"), HtmlFormatter(cssclass="highlight",
                                                                      **options))
    assert clean_html(html) == html


@pytest.mark.parametrize(("lang", "code"), [
    ("python", "import os\nprint(f'{os.sep!r}')\n"),
    ("html", '<script>alert("x")</script><a href="javascript:x" onclick="y">z</a>\n'),
    ("javascript", "document.body.innerHTML = '<img src=x onerror=alert(1)>';\n"),
    ("css", "body { background: url(javascript:alert(1)) }\n"),
    ("rust", "fn main() { println!(\"{}\", 1 < 2); }\n"),
    ("text", "plain & simple <tags>\n"),
])
def test_our_highlighters_output_passes_unchanged(lang: str, code: str) -> None:
    html = render(lang, code)
    assert clean_html(html) == html
    assert "<script" not in html and "<a " not in html  # the code is text, escaped


def test_the_allowlist_is_exactly_pygments_class_based_elements() -> None:
    seen: set[str] = set()
    for options in [*FORMATTER_OPTIONS, {"filename": "a.py", "linenos": "table"}]:
        html = highlight("x = 1\n", get_lexer_by_name("python"),
                         HtmlFormatter(cssclass="highlight", **options))
        seen |= set(re.findall(r"<([a-z0-9]+)", html))
    assert seen == TAGS


@pytest.mark.parametrize("markup", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "<iframe src=x></iframe>",
    "<object data=x></object>", "<embed src=x>", "<form action=x><input><button>b</button>",
    "<link rel=stylesheet href=x>", "<meta http-equiv=refresh content=0>", "<base href=x>",
    "<style>*{}</style>", "<svg onload=alert(1)></svg>", "<math><mi>x</mi></math>",
    "<a href=javascript:alert(1)>a</a>", "<video src=x></video>", "<template>t</template>",
    "<details open ontoggle=alert(1)>d</details>", "<textarea>t</textarea>",
    "<noscript><img src=x onerror=alert(1)></noscript>", "<!-- comment -->",
])
def test_everything_else_is_removed(markup: str) -> None:
    cleaned = clean_html(f'<div class="highlight"><pre>{markup}</pre></div>')
    assert re.findall(r"<([a-z0-9!]+)", cleaned) == ["div", "pre"]


def test_only_the_class_attribute_is_kept() -> None:
    cleaned = clean_html('<span class="k" id="line-1" style="color:red" title="t" onclick="x"'
                         ' data-x="1" name="n" href="/">k</span><td colspan="2">c</td>')
    assert cleaned == '<span class="k">k</span>c'


def test_ids_pygments_writes_only_on_request_are_dropped() -> None:
    # Only the linespans option (which our highlighter does not use) writes ids.
    html = highlight("x = 1\n", get_lexer_by_name("python"),
                     HtmlFormatter(cssclass="highlight", linespans="line"))
    assert 'id="line-1"' in html
    assert clean_html(html) == html.replace(' id="line-1"', "")
    assert " id=" not in render("python", "x = 1\n" * 3)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_answers_are_cleaned(name: str) -> None:
    cleaned = clean_html(HOSTILE[name])
    assert clean_html(cleaned) == cleaned  # nothing left to take out
    for marker in FORBIDDEN:
        assert marker not in cleaned, marker


# End to end: the fake highlighter answers hostile markup, the worker stores it cleaned.

@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_markup_never_reaches_the_database_or_the_page(
        fake_stack: Stack, http: aiohttp.ClientSession, name: str) -> None:
    snippet_id = await create_via_form(http, fake_stack.url, "python", f"__{name}__")
    body = await wait_for_snippet(http, fake_stack.url, snippet_id)
    assert body["status"] == "highlighted", fake_stack.logs()
    assert body["highlighted_code"] == clean_html(HOSTILE[name])
    assert stored_html(fake_stack, snippet_id) == body["highlighted_code"]

    async with http.get(f"{fake_stack.url}/snippets/{snippet_id}", headers=HTML) as response:
        page = await response.text()
    assert response.status == 200
    code = page[page.index('<section id="snippet-body"'):page.index("</section>")]
    assert '<div class="highlight">' in code
    for marker in FORBIDDEN:
        assert marker not in body["highlighted_code"]
        assert marker not in code
    for marker in ("alert(", "javascript:", "<style"):
        assert marker not in page
    # The page's only scripts are its own files, each with the page's nonce: none inline.
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.DOTALL)
    assert page.count("<script") == len(scripts)
    for attributes, inline in scripts:
        assert ' nonce="' in attributes and ' src="/static/' in attributes, attributes
        assert not inline.strip(), inline
    async with http.get(f"{fake_stack.url}/snippets/{snippet_id}/events") as response:
        stream = await response.text()
    assert "highlight" in stream
    for marker in FORBIDDEN:
        assert marker not in stream


async def test_a_highlighter_cannot_give_elements_the_pages_own_ids(
        fake_stack: Stack, http: aiohttp.ClientSession) -> None:
    snippet_id = await create_via_form(http, fake_stack.url, "python", "__spoof_id__")
    body = await wait_for_snippet(http, fake_stack.url, snippet_id)
    assert body["status"] == "highlighted", fake_stack.logs()
    assert body["highlighted_code"] == ('<div class="highlight"><pre><span class="k">spoof</span>'
                                        "</pre></div>")
    async with http.get(f"{fake_stack.url}/snippets/{snippet_id}", headers=HTML) as response:
        page = await response.text()
    assert page.count('id="snippet-body"') == 1
    assert 'id="live-region"' not in page


@pytest.mark.parametrize(("code", "reason"), [
    ("__wrong_type__", "highlighter answered application/json, not text/html"),
    ("__not_utf8__", "highlighter response is not UTF-8"),
    ("__latin1__", "highlighter answered iso-8859-1, not UTF-8"),
])
async def test_answers_that_are_not_utf8_html_fail_with_the_reason(
        fake_stack: Stack, http: aiohttp.ClientSession, code: str, reason: str) -> None:
    created = await create_via_api(http, fake_stack.url, "python", code)
    body = await wait_for_snippet(http, fake_stack.url, created["id"])
    assert body["status"] == "failed", fake_stack.logs()
    assert body["error"] == reason
    assert body["highlighted_code"] is None
    assert stored_html(fake_stack, created["id"]) is None


@pytest.mark.timeout(180)
async def test_50_mb_answers_fail_without_the_worker_reading_them(
        fake_stack: Stack, http: aiohttp.ClientSession) -> None:
    assert fake_stack.worker is not None
    worker = fake_stack.worker
    with peak_rss(worker.pid) as peak:
        created = await asyncio.gather(*(
            create_via_api(http, fake_stack.url, "python", f"__{kind}__") for kind in HUGE))
        bodies = {kind: await wait_for_snippet(http, fake_stack.url, snippet["id"], timeout=60)
                  for kind, snippet in zip(HUGE, created, strict=True)}
    for kind in ("huge_chunked", "huge_unframed", "huge_declared"):
        assert bodies[kind]["status"] == "failed", (kind, fake_stack.logs())
        assert bodies[kind]["error"] == f"highlighter response is over {RESPONSE_CAP} bytes"
        assert stored_html(fake_stack, bodies[kind]["id"]) is None
    # A Content-Length that understates the body frames a short answer. Bytes past it that
    # arrive with the answer make it a malformed response; arriving later, they are never
    # read as anything (the connection is dropped) and the framed 100 bytes are the answer.
    lying = bodies["huge_lying"]
    if lying["status"] == "failed":
        assert lying["error"] == ("highlighter sent a malformed HTTP response:"
                                  " Data after `Connection: close`"), lying["error"]
    else:
        assert lying["status"] == "highlighted", fake_stack.logs()
        assert lying["highlighted_code"] == clean_html(LYING_PREFIX.decode())
    assert "AAAA" not in worker.log()  # no raw answer in the logs...
    client = redis.Redis.from_url(fake_stack.redis_url)
    try:  # ...nor in the failed jobs' records
        records = client.hvals(deadset.DEAD_DATA)
    finally:
        client.close()
    assert len(records) >= 3 and not any(b"AAAA" in record for record in records)

    assert worker.popen.poll() is None, worker.log()
    assert peak[0] < WORKER_RSS_LIMIT, f"worker peaked at {peak[0] / 2**20:.0f} MiB"
    after = await create_via_api(http, fake_stack.url, "python", "still_working = True")
    body = await wait_for_snippet(http, fake_stack.url, after["id"])
    assert body["status"] == "highlighted"
    assert '<span class="fake">still_working = True</span>' in body["highlighted_code"]
