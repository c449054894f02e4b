"""The highlighter's ANSI answer (``format=ansi``), over real HTTP on loopback: the code
coloured for a 256-colour terminal, with the HTML answer's limits and errors, and the
worker's client for it."""

from __future__ import annotations

import re
from collections.abc import Iterator

import aiohttp
import pytest

from snippet_service.valkey import free_port
from tasks.client import HighlighterRejected, HighlighterUnavailable, highlight_ansi
from tests.servers import base_env, python_server

ESCAPES = re.compile(r"\x1b\[[0-9;]*m")
CODE = 'import os\n\n\ndef f(x):\n    """Doc."""\n    return x * 2  # twice\n'
# C#'s lexer backtracks on runs of short lines: 4 KiB take over a second.
PATHOLOGICAL = "a\n" * 2048


@pytest.fixture(scope="module")
def highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Our highlighter alone, with a short render limit; yields its URL."""
    env = base_env(HIGHLIGHT_RENDER_SECONDS="0.3")
    process, port = python_server("highlighter", ["-m", "snippet_service.highlighter"], env,
                                  tmp_path_factory.mktemp("highlighter"), "HIGHLIGHTER_PORT")
    yield f"http://127.0.0.1:{port}/"
    process.stop()


async def post(http: aiohttp.ClientSession, url: str,
               **fields: str) -> tuple[int, str, str | None, str]:
    async with http.post(url, data=fields) as response:
        return response.status, response.content_type, response.charset, await response.text()


async def test_format_ansi_answers_terminal_colours(highlighter: str,
                                                    http: aiohttp.ClientSession) -> None:
    status, content_type, charset, text = await post(http, highlighter, lang="python",
                                                     code=CODE, format="ansi")
    assert (status, content_type, charset) == (200, "text/plain", "utf-8")
    assert "\x1b[38;5;" in text  # 256-colour escapes
    assert ESCAPES.sub("", text) == CODE
    assert "<span" not in text


async def test_html_stays_the_default(highlighter: str, http: aiohttp.ClientSession) -> None:
    default = await post(http, highlighter, lang="python", code=CODE)
    assert default == await post(http, highlighter, lang="python", code=CODE, format="html")
    assert default[:2] == (200, "text/html") and "\x1b" not in default[3]
    assert '<span class="kn">import</span>' in default[3]


async def test_the_codes_own_control_characters_never_reach_the_terminal(
        highlighter: str, http: aiohttp.ClientSession) -> None:
    code = 'x = "\x1b]0;title\x07\x1b[2J\x9b31m"\n'
    _, _, _, text = await post(http, highlighter, lang="python", code=code, format="ansi")
    assert ESCAPES.sub("", text) == 'x = "\u241b]0;title\u2407\u241b[2J\ufffd31m"\n'
    assert "\x07" not in text and "\x9b" not in text and "\x1b]" not in text


@pytest.mark.parametrize("answer", ["pdf", "ANSI", ""])
async def test_an_unknown_format_is_400(highlighter: str, http: aiohttp.ClientSession,
                                        answer: str) -> None:
    status, _, _, text = await post(http, highlighter, lang="python", code="x", format=answer)
    assert status == 400
    assert f"unknown format {answer!r}" in text and "'html' or 'ansi'" in text


async def test_ansi_has_the_html_limits_and_errors(highlighter: str,
                                                   http: aiohttp.ClientSession) -> None:
    big = "x = 1\n" * (600 * 1024 // 6)
    for lang, code, status, reason in (("python", big, 413, ""),
                                       ("klingon", "x", 400, "unknown language 'klingon'"),
                                       ("csharp", PATHOLOGICAL, 422, "too slow to highlight")):
        for answer in ("html", "ansi"):
            got, _, _, text = await post(http, highlighter, lang=lang, code=code, format=answer)
            assert (got, answer) == (status, answer) and reason in text
    # the killed render processes were replaced: both answers still come
    assert (await post(http, highlighter, lang="python", code=CODE, format="ansi"))[0] == 200
    assert (await post(http, highlighter, lang="python", code=CODE))[0] == 200


async def test_the_workers_client_asks_for_ansi(highlighter: str,
                                                http: aiohttp.ClientSession) -> None:
    text = await highlight_ansi(http, highlighter, "python", CODE)
    assert ESCAPES.sub("", text) == CODE and "\x1b[" in text
    with pytest.raises(HighlighterRejected, match="unknown language 'klingon'"):
        await highlight_ansi(http, highlighter, "klingon", "x")
    with pytest.raises(HighlighterRejected, match="over 100 bytes"):
        await highlight_ansi(http, highlighter, "python", CODE * 10, max_bytes=100)
    with pytest.raises(HighlighterUnavailable):
        await highlight_ansi(http, f"http://127.0.0.1:{free_port()}/", "python", "x")
