"""Cross-site requests: every form POST needs the token from its cookie and must come from
our own pages; the JSON API takes no cookies and is not affected. Every response carries
the security headers, and no page needs an inline script or style."""

from __future__ import annotations

import re

import aiohttp
import pytest

from snippet_service.web.app import TEMPLATES_DIR
from snippet_service.web.csrf import BAD_TOKEN, COOKIE_NAME, CROSS_SITE, FIELD_NAME
from tests.conftest import queued_jobs, row_count
from tests.helpers import HTML, create_via_api, form_token, post_form, token_cookie
from tests.servers import Stack

SNIPPET = {"language": "python", "plain_code": "x = 1"}


def message(page: str) -> str:
    match = re.search(r'<p class="error-message">(.*?)</p>', page)
    assert match is not None, page
    return match.group(1).replace("&#39;", "'")


async def test_the_form_page_hands_out_a_safe_token_cookie(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{stack.url}/") as response:
        page = await response.text()
        cookie = response.cookies[COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; Secure when the request is HTTPS
    assert int(cookie["max-age"]) > 0
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", cookie.value)
    assert f'<input type="hidden" name="{FIELD_NAME}" value="{cookie.value}">' in page

    async with http.get(f"{stack.url}/", headers=token_cookie(cookie.value)) as response:
        again = await response.text()
    assert f'value="{cookie.value}"' in again  # one token per browser, not per page view
    async with http.get(f"{stack.url}/api/snippets/1") as response:
        assert COOKIE_NAME not in response.cookies  # only pages with a form set it


async def test_a_form_with_the_token_from_our_page_is_accepted(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    token = await form_token(http, stack.url)
    for headers in ({"Sec-Fetch-Site": "same-origin", "Origin": stack.url},
                    {"Sec-Fetch-Site": "none"},
                    {"Origin": stack.url},  # a browser that predates Sec-Fetch-Site
                    {}):                    # not a browser
        async with http.post(f"{stack.url}/snippets", data={FIELD_NAME: token, **SNIPPET},
                             headers={**token_cookie(token), **headers},
                             allow_redirects=False) as response:
            assert response.status == 303, (headers, await response.text())


@pytest.mark.parametrize("case", ["no cookie, no field", "field without cookie",
                                  "cookie without field", "different values",
                                  "malformed cookie echoed in the field"])
async def test_forms_without_the_matching_token_are_403(
        stack: Stack, http: aiohttp.ClientSession, case: str) -> None:
    token, other = await form_token(http, stack.url), await form_token(http, stack.url)
    fields, cookie = {
        "no cookie, no field": ({}, None),
        "field without cookie": ({FIELD_NAME: token}, None),
        "cookie without field": ({}, token),
        "different values": ({FIELD_NAME: other}, token),
        "malformed cookie echoed in the field": ({FIELD_NAME: "x"}, "x"),
    }[case]
    rows, jobs = row_count(stack.db_path), queued_jobs(stack.redis_url)
    async with http.post(f"{stack.url}/snippets", data={**fields, **SNIPPET},
                         headers=token_cookie(cookie) if cookie else {},
                         allow_redirects=False) as response:
        page = await response.text()
    assert response.status == 403
    assert response.content_type == "text/html"
    assert "403 · Forbidden" in page
    assert message(page) == BAD_TOKEN
    assert row_count(stack.db_path) == rows
    assert queued_jobs(stack.redis_url) <= jobs  # finished jobs drop out; none were added


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # a sibling subdomain could plant a cookie
    {"Sec-Fetch-Site": "cross-site", "Origin": "REPLACED"},  # the browser's word wins
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},  # same host, another port: another origin
    {"Origin": "not a url"},
])
async def test_cross_site_forms_are_403_even_with_a_valid_token(
        stack: Stack, http: aiohttp.ClientSession, headers: dict[str, str]) -> None:
    headers = {key: stack.url if value == "REPLACED" else value for key, value in headers.items()}
    rows = row_count(stack.db_path)
    status, page, _ = await _post_with(http, stack, headers)
    assert status == 403
    assert message(page) == CROSS_SITE
    assert row_count(stack.db_path) == rows


async def _post_with(http: aiohttp.ClientSession, stack: Stack,
                     headers: dict[str, str]) -> tuple[int, str, str]:
    token = await form_token(http, stack.url)
    async with http.post(f"{stack.url}/snippets", data={FIELD_NAME: token, **SNIPPET},
                         headers={**token_cookie(token), **headers},
                         allow_redirects=False) as response:
        return response.status, await response.text(), response.content_type


async def test_multipart_forms_need_the_token_too(stack: Stack,
                                                  http: aiohttp.ClientSession) -> None:
    token = await form_token(http, stack.url)
    for with_token, expected in ((True, 303), (False, 403)):
        form = aiohttp.FormData()
        if with_token:
            form.add_field(FIELD_NAME, token)
        form.add_field("language", "python")
        form.add_field("plain_code", "multipart = True")
        async with http.post(f"{stack.url}/snippets", data=form, headers=token_cookie(token),
                             allow_redirects=False) as response:
            assert response.status == expected, await response.text()


async def test_a_rerendered_form_keeps_the_token_and_what_was_typed(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    token = await form_token(http, stack.url)
    status, page, _ = await post_form(http, stack.url,
                                      {"language": "python", "plain_code": "   "}, token)
    assert status == 400
    assert f'name="{FIELD_NAME}" value="{token}"' in page


async def test_the_json_api_takes_no_cookies_and_no_token(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    cross_site = {"Sec-Fetch-Site": "cross-site", "Origin": "http://evil.example"}
    async with http.post(f"{stack.url}/api/snippets", headers=cross_site,
                         json={"language": "python", "code": "api = True"}) as response:
        assert response.status == 201
        assert COOKIE_NAME not in response.cookies
    # What a cross-site page can send without a preflight is refused for its type.
    async with http.post(f"{stack.url}/api/snippets", headers=cross_site,
                         data=b'{"language": "python", "code": "x"}') as response:
        assert response.status == 415


# Headers on every kind of response.

async def _responses(stack: Stack,
                     http: aiohttp.ClientSession) -> dict[str, aiohttp.ClientResponse]:
    created = await create_via_api(http, stack.url, "python", "headers = True")
    ident = created["id"]
    token = await form_token(http, stack.url)
    requests = {
        "page": ("GET", "/", {}),
        "snippet page": ("GET", f"/snippets/{ident}", {"headers": HTML}),
        "snippet text": ("GET", f"/snippets/{ident}", {}),
        "raw": ("GET", f"/snippets/{ident}/raw", {}),
        "events": ("GET", f"/snippets/{ident}/events", {}),
        "404 page": ("GET", "/nowhere", {}),
        "405 page": ("DELETE", "/snippets", {}),
        "upload": ("PUT", "/", {"data": b"uploaded = True\n"}),
        "403 page": ("POST", "/snippets", {"data": SNIPPET}),
        "400 page": ("POST", "/snippets", {"data": {FIELD_NAME: token},
                                           "headers": token_cookie(token)}),
        "static": ("GET", "/static/site.css", {}),
        "static 404": ("GET", "/static/nope.css", {}),
        "stylesheet": ("GET", "/highlight.css", {}),
        "api": ("GET", f"/api/snippets/{ident}", {}),
        "api 404": ("GET", "/api/snippets/0", {}),
        "api 201": ("POST", "/api/snippets", {"json": {"language": "python", "code": "y"}}),
        "api 415": ("POST", "/api/snippets", {"data": b"x"}),
    }
    responses = {}
    for name, (method, path, kwargs) in requests.items():
        async with http.request(method, stack.url + path, allow_redirects=False,
                                **kwargs) as response:
            await response.read()
            responses[name] = response
    return responses


async def test_every_response_carries_the_security_headers(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    for name, response in (await _responses(stack, http)).items():
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Referrer-Policy"] == "same-origin", name
        assert headers["X-Frame-Options"] == "DENY", name
        csp = dict(part.strip().split(" ", 1) for part in
                   headers["Content-Security-Policy"].split(";"))
        assert csp["frame-ancestors"] == "'none'", name
        assert re.fullmatch(r"'none'|'nonce-[A-Za-z0-9_-]{22,}' 'strict-dynamic'",
                            csp["script-src"]), name
        assert csp["style-src"] == "'self'", name
        assert csp["default-src"] == "'self'", name
        assert csp["object-src"] == "'none'", name
        assert csp["base-uri"] == "'none'", name
        assert csp["form-action"] == "'self'", name
        assert "unsafe" not in headers["Content-Security-Policy"], name
        assert re.fullmatch(r"[0-9a-f]{16}", headers.get("X-Request-Id", "")), name


async def test_scripts_carry_this_responses_nonce(stack: Stack,
                                                  http: aiohttp.ClientSession) -> None:
    nonces = []
    for path in ("/jobs", "/jobs"):
        async with http.get(stack.url + path) as response:
            page = await response.text()
        nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"])
        assert nonce is not None
        assert f'<script nonce="{nonce.group(1)}" src="/static/jobs.js"' in page
        nonces.append(nonce.group(1))
    assert nonces[0] != nonces[1]


def test_templates_need_no_inline_script_or_style() -> None:
    """The policy allows neither, so no template may rely on them."""
    for template in TEMPLATES_DIR.rglob("*.html"):
        text = template.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, (template, tag)
            assert 'nonce="{{ csp_nonce() }}"' in tag, (template, tag)
        assert "<style" not in text, template
        assert not re.search(r"\sstyle=", text), template
        assert not re.search(r"\son[a-z]+=", text), template
