"""Bad input gets a clear 4xx answer and stores or enqueues nothing. Every validation
rule's message is checked in-process in test_forms.py; here each way in, end to end."""

from __future__ import annotations

import re

import aiohttp
import pytest

from tests.conftest import queued_jobs, row_count
from tests.helpers import HTML, form_token, post_form, token_cookie
from tests.servers import Stack


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"language": "python", "plain_code": "  \n\t  "}, "The code is empty."),
        ({"language": "no-such-language", "plain_code": "x = 1"},
         "This language is not supported."),
        ({}, "Choose a language."),
    ],
)
async def test_invalid_form_is_rerendered_and_nothing_is_stored(
        stack: Stack, http: aiohttp.ClientSession, fields: dict[str, str], message: str) -> None:
    rows, jobs = row_count(stack.db_path), queued_jobs(stack.redis_url)
    status, page, _ = await post_form(http, stack.url, fields)
    assert status == 400
    assert message in page
    assert '<form method="post"' in page
    if fields.get("plain_code", "").strip():
        assert fields["plain_code"] in page  # what was typed is kept
    assert row_count(stack.db_path) == rows
    assert queued_jobs(stack.redis_url) == jobs


async def test_typed_code_is_kept_escaped(stack: Stack, http: aiohttp.ClientSession) -> None:
    code = "</textarea><script>alert(1)</script>"
    status, page, _ = await post_form(http, stack.url, {"language": "nope", "plain_code": code})
    assert status == 400
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt;</textarea>" in page
    assert "<script>alert(1)" not in page


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        (b'{"language": "python"', "application/json", 400, "not valid JSON"),
        (b'["python", "x"]', "application/json", 400, "must be a JSON object"),
        (b'{"language": "cobol-2099", "code": "x"}', "application/json", 400, "not supported"),
        (b'{"language": "python", "code": 42}', "application/json", 400, "must be text"),
        (b'{"language": "python", "code": "\\ud800"}', "application/json", 400, "UTF-8"),
        (b'{"language": "python", "code": "\xff\xfe"}', "application/json", 400, "UTF-8"),
        (b"language=python&code=x", "application/x-www-form-urlencoded", 415, "application/json"),
    ],
)
async def test_invalid_api_input_is_a_json_error(
        stack: Stack, http: aiohttp.ClientSession, body: bytes, content_type: str, status: int,
        message: str) -> None:
    rows, jobs = row_count(stack.db_path), queued_jobs(stack.redis_url)
    async with http.post(f"{stack.url}/api/snippets", data=body,
                         headers={"Content-Type": content_type}) as response:
        payload = await response.json()
    assert response.status == status
    assert message in payload["error"]
    assert row_count(stack.db_path) == rows
    assert queued_jobs(stack.redis_url) == jobs


async def test_invalid_utf8_form_is_400(stack: Stack, http: aiohttp.ClientSession) -> None:
    rows = row_count(stack.db_path)
    token = await form_token(http, stack.url)
    async with http.post(f"{stack.url}/snippets",
                         data=f"csrf_token={token}&language=python&plain_code=%FF%FE".encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded",
                                  **token_cookie(token)}) as response:
        page = await response.text()
    assert response.status == 400
    assert "UTF-8" in page
    assert row_count(stack.db_path) == rows


@pytest.mark.parametrize("path", ["/snippets/0", "/snippets/999999", "/snippets/abc",
                                  "/snippets/99999999999999999999999999", "/snippets/-1",
                                  "/snippets/999999/raw", "/nowhere", "/snippets/²",
                                  "/snippets/١", "/snippets/1.0", "/snippets/abc/raw",
                                  "/snippets/abc/events", "/snippets/²/events",
                                  "/snippets/99999999999999999999/events",
                                  "/snippets/9223372036854775808"])
async def test_unknown_pages_are_404_pages(stack: Stack, http: aiohttp.ClientSession,
                                           path: str) -> None:
    async with http.get(stack.url + path, headers=HTML) as response:  # as a browser
        page = await response.text()
    assert response.status == 404
    assert response.content_type == "text/html"
    assert "Not found" in page
    assert "Traceback" not in page


@pytest.mark.parametrize("path", ["/api/snippets/999999", "/api/snippets/abc",
                                  "/api/snippets/123456789012345678901234567890",
                                  "/api/snippets/²", "/api/snippets/-1", "/api/snippets/1e3"])
async def test_unknown_api_ids_are_json_404(stack: Stack, http: aiohttp.ClientSession,
                                            path: str) -> None:
    async with http.get(stack.url + path) as response:
        body = await response.json()
    assert response.status == 404
    assert body["error"] == "No such snippet."


async def test_wrong_method_is_405(stack: Stack, http: aiohttp.ClientSession) -> None:
    async with http.patch(f"{stack.url}/api/snippets/1") as response:
        assert response.status == 405
        assert "error" in await response.json()
    async with http.delete(f"{stack.url}/snippets") as response:
        assert response.status == 405
        assert "POST" in response.headers["Allow"]


def _multipart(token: str, fields: dict[str, bytes], charset: str = "utf-8") -> bytes:
    parts = [f'--b\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
             .encode()]
    for name, value in fields.items():
        parts.append(f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n'
                     f"Content-Type: text/plain; charset={charset}\r\n\r\n".encode()
                     + value + b"\r\n")
    return b"".join(parts) + b"--b--\r\n"


@pytest.mark.parametrize(("fields", "charset", "status", "message"), [
    ({"language": b"python", "plain_code": "z = '\u017c\u00f3\u0142w'".encode()}, "utf-8", 303, ""),
    ({"language": b"python", "plain_code": b"   "}, "utf-8", 400, "The code is empty."),
    ({"language": b"klingon", "plain_code": b"qapla"}, "utf-8", 400, "not supported"),
    ({"language": b"python", "plain_code": b"\xff\xfe"}, "utf-8", 400,
     "The form could not be read."),
    ({"language": b"python", "plain_code": b"x"}, "no-such-charset", 400,
     "The form could not be read."),
])
async def test_multipart_forms(stack: Stack, http: aiohttp.ClientSession,
                               fields: dict[str, bytes], charset: str, status: int,
                               message: str) -> None:
    rows = row_count(stack.db_path)
    token = await form_token(http, stack.url)
    async with http.post(f"{stack.url}/snippets", data=_multipart(token, fields, charset),
                         headers={"Content-Type": "multipart/form-data; boundary=b",
                                  **token_cookie(token)}, allow_redirects=False) as response:
        page = await response.text()
    assert response.status == status, page
    assert message in page
    assert row_count(stack.db_path) == rows + (status == 303)
    if status == 400 and "could not be read" not in message:
        typed = fields["plain_code"].decode()
        # what was typed is kept (after the newline a textarea's content may start with)
        assert re.search(f">\n?{re.escape(typed)}</textarea>", page), page
        if fields["language"] == b"python":
            assert '<option value="python" selected>' in page


@pytest.mark.parametrize("body", [
    b"--b\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--b--\r\n",
    b'--b\r\nContent-Disposition: form-data; name="plain_code"\r\n'
    b"Content-Transfer-Encoding: rot13\r\n\r\nx\r\n--b--\r\n",
    b'--b\r\nContent-Disposition: form-data; name="plain_code"\r\n\r\ncut off',
    b"not multipart at all",
])
async def test_malformed_multipart_is_400(stack: Stack, http: aiohttp.ClientSession,
                                          body: bytes) -> None:
    token = await form_token(http, stack.url)
    async with http.post(f"{stack.url}/snippets", data=body,
                         headers={"Content-Type": "multipart/form-data; boundary=b",
                                  **token_cookie(token)}) as response:
        page = await response.text()
    assert response.status == 400
    assert "The form could not be read." in page


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/xml",
                                          "application/octet-stream"])
async def test_wrong_content_type_on_the_form_is_415(
        stack: Stack, http: aiohttp.ClientSession, content_type: str) -> None:
    rows = row_count(stack.db_path)
    token = await form_token(http, stack.url)
    async with http.post(f"{stack.url}/snippets",
                         data=f"csrf_token={token}&language=python&plain_code=x".encode(),
                         headers={"Content-Type": content_type, **token_cookie(token)}) as response:
        page = await response.text()
    assert response.status == 415
    assert response.content_type == "text/html"
    assert "Submit the form as a web form." in page
    assert row_count(stack.db_path) == rows


@pytest.mark.parametrize("content_type", ["text/plain", "multipart/form-data; boundary=b",
                                          "application/json-patch+json"])
async def test_wrong_content_type_on_the_api_is_415(
        stack: Stack, http: aiohttp.ClientSession, content_type: str) -> None:
    rows = row_count(stack.db_path)
    async with http.post(f"{stack.url}/api/snippets",
                         data=b'{"language": "python", "code": "x"}',
                         headers={"Content-Type": content_type}) as response:
        body = await response.json()
    assert response.status in (400, 415)
    assert response.status == 415 or body["error"] == "The form could not be read."
    assert row_count(stack.db_path) == rows
