"""From a terminal: ``curl -T`` uploads (the file name or ``language`` picks the language;
the answer is the URL and the owner token), the plain code for a client that does not ask
for HTML, ``?format=ansi`` made once by the worker and kept, and downloads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import create_via_api, unique, until, wait_for_snippet
from tests.servers import Stack

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
CURL = shutil.which("curl")


def curl(*args: str, stdin: bytes | None = None) -> str:
    if CURL is None:
        pytest.skip("curl is not installed")
    done = subprocess.run([CURL, "-sS", "--fail-with-body", *args], input=stdin,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr.decode() + done.stdout.decode()
    return done.stdout.decode()


async def test_curl_uploads_a_file_and_stdin(http: aiohttp.ClientSession, stack: Stack,
                                             tmp_path: Path) -> None:
    source = tmp_path / "report.rb"
    source.write_text(unique("puts 'hello'") + "\n")
    url, token = curl("-T", str(source), f"{stack.url}/").splitlines()
    ident = url.rsplit("/", 1)[1]
    assert url == f"{stack.url}/snippets/{ident}" and len(token) >= 32
    snippet = await wait_for_snippet(http, stack.url, ident)
    assert (snippet["language"], snippet["title"], snippet["detected"]) == (
        "ruby", "report.rb", True)
    assert snippet["code"] == source.read_text()
    code = unique("print('from a pipe')")
    url, token = curl("-T", "-", f"{stack.url}/?language=python&visibility=public",
                      stdin=code.encode()).splitlines()
    snippet = await wait_for_snippet(http, stack.url, url.rsplit("/", 1)[1])
    assert (snippet["language"], snippet["code"], snippet["title"]) == ("python", code, None)
    assert snippet["visibility"] == "public" and not snippet["detected"]
    # the token is the owner's: it deletes the snippet
    async with http.delete(f"{stack.url}/api/snippets/{snippet['id']}",
                           headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 204


async def test_bad_uploads_get_a_plain_text_reason(http: aiohttp.ClientSession,
                                                   stack: Stack) -> None:
    async with http.put(f"{stack.url}/snippets", data=b"x = 1") as response:
        assert response.status == 405  # another route's path is not a file name
    async with http.get(f"{stack.url}/nowhere.py") as response:
        assert response.status == 404  # only PUT uploads there
    for path, body, reason in (("/", b"\xff\xfe", "not valid UTF-8"),
                               ("/", b"   \n", "empty"),
                               ("/?language=nope", b"x = 1", "not supported"),
                               ("/?expires=forever", b"x = 1", "Expiry")):
        async with http.put(f"{stack.url}{path}", data=body) as response:
            assert response.status == 400
            assert response.content_type == "text/plain"
            assert reason in await response.text()


async def test_plain_code_unless_html_is_asked_for(http: aiohttp.ClientSession,
                                                   stack: Stack) -> None:
    code = unique("x = 'exact'\r\n\tend without a newline ✓")
    created = await create_via_api(http, stack.url, "python", code)
    url = f"{stack.url}/snippets/{created['id']}"
    assert curl(url) == code
    async with http.get(url) as response:  # aiohttp's Accept is */*, as curl's
        assert response.content_type == "text/plain" and "Accept" in response.headers["Vary"]
        assert await response.read() == code.encode()
    async with http.get(url, headers={"Accept": "text/html,*/*;q=0.8"}) as response:
        assert response.content_type == "text/html"
    async with http.get(f"{stack.url}/snippets/Zz9_unknown1") as response:
        assert response.status == 404 and response.content_type == "text/plain"
    async with http.get(f"{url}?format=pdf") as response:
        assert response.status == 400


async def test_ansi_is_made_by_the_worker_once_and_kept(http: aiohttp.ClientSession,
                                                        stack: Stack) -> None:
    code = unique("def colour(x):\n    return x + 1") + "\n"
    created = await create_via_api(http, stack.url, "python", code)
    url = f"{stack.url}/snippets/{created['id']}?format=ansi"
    coloured = curl(url)
    assert "\x1b[" in coloured and ANSI_ESCAPE.sub("", coloured) == code
    (row,) = stack.database.query(
        "SELECT ansi_code, ansi_revision, revision FROM snippets WHERE slug = ?",
        (created["id"],))
    assert row[0] == coloured and row[1] == row[2] == 1
    assert curl(url) == coloured  # kept: read back, not made again
    # a new revision (another language) gets its own colouring
    async with http.post(f"{stack.url}/api/snippets/{created['id']}/highlight",
                         json={"language": "text"},
                         headers={"Authorization": f"Bearer {created['owner_token']}"}) as r:
        assert r.status == 202

    def recoloured() -> bool:
        text = curl(url)
        return ANSI_ESCAPE.sub("", text) == code and not text.startswith(coloured[:12])

    assert await until(recoloured, 15)


async def test_download_is_the_exact_bytes_with_a_safe_name(http: aiohttp.ClientSession,
                                                             stack: Stack) -> None:
    code = unique("line one\r\nline two ✓")
    cases = ((None, "python", None, ""), ("../../etc/passwd", "python", "etc_passwd", ""),
             ("My Script.sh", "bash", "My_Script.sh", ""), ("Makefile", "make", "Makefile", ""),
             ("naïve café.py", "python", "na_ve_caf.py", "na%C3%AFve%20caf%C3%A9.py"))
    for title, language, expected, utf8 in cases:
        async with http.post(f"{stack.url}/api/snippets",
                             json={"language": language, "code": code, "title": title}) as r:
            ident = (await r.json())["id"]
        async with http.get(f"{stack.url}/snippets/{ident}/download") as response:
            assert await response.read() == code.encode()
            disposition = response.headers["Content-Disposition"]
        name = expected or f"snippet-{ident}.py"
        assert disposition == f'attachment; filename="{name}"' + (
            f"; filename*=UTF-8''{utf8}" if utf8 else "")
