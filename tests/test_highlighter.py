"""Our Pygments highlighter service, over real HTTP."""

from __future__ import annotations

import aiohttp

from tests.servers import Stack


async def test_post_form_answers_an_html_fragment(stack: Stack,
                                                  http: aiohttp.ClientSession) -> None:
    async with http.post(stack.highlighter_url,
                         data={"lang": "python", "code": "import os\n"}) as response:
        html = await response.text()
    assert response.status == 200
    assert response.content_type == "text/html"
    assert html.startswith('<div class="highlight"><pre>')
    assert '<span class="kn">import</span>' in html


async def test_unknown_language_is_400(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(stack.highlighter_url,
                         data={"lang": "klingon", "code": "x"}) as response:
        assert response.status == 400
        assert "unknown language 'klingon'" in await response.text()


async def test_missing_fields_are_400(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.post(stack.highlighter_url, data={"code": "x"}) as response:
        assert response.status == 400
        assert "'lang'" in await response.text()


async def test_code_over_the_cap_is_413(stack: Stack, http: aiohttp.ClientSession) -> None:
    code = "x = 1\n" * (600 * 1024 // 6)
    async with http.post(stack.highlighter_url, data={"lang": "python", "code": code}) as response:
        assert response.status == 413


async def test_languages_and_stylesheet(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(stack.highlighter_url + "languages") as response:
        languages = await response.json()
    by_name = {item["name"]: item["aliases"] for item in languages}
    assert "python" in by_name["Python"]
    assert len(languages) > 100
    async with http.get(stack.highlighter_url + "style.css") as response:
        css = await response.text()
    assert response.content_type == "text/css"
    assert ".highlight .k" in css
