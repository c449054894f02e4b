"""Pastebin basics over HTTP: unguessable ids (old numeric ones still served), the owner
token (only its hash stored) guarding delete, re-highlight and edit, forks, visibility and
the paged public list, titles, language detection, expiry choices and burn after reading."""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from snippet_service.web.csrf import COOKIE_NAME, FIELD_NAME
from tests.helpers import form_token, unique, wait_for_snippet
from tests.servers import Stack

HTML = {"Accept": "text/html"}
NEW_ID = re.compile(r"[A-Za-z0-9_-]{11}")


async def api_create(http: aiohttp.ClientSession, stack: Stack, **fields: Any) -> dict[str, Any]:
    body = {"language": "python", "code": unique("x = 1"), **fields}
    async with http.post(f"{stack.url}/api/snippets", json=body) as response:
        assert response.status == 201, await response.text()
        created: dict[str, Any] = await response.json()
    return created


def shown(page: str) -> str:
    """The text a page shows (highlighted code is split into spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def form_create(http: aiohttp.ClientSession, stack: Stack,
                      **fields: str) -> tuple[str, str, str]:
    """POST the form as a browser: (snippet id, its owner cookie's value, CSRF token)."""
    csrf = await form_token(http, stack.url)
    data = {FIELD_NAME: csrf, "language": "python", "plain_code": unique("y = 2"), **fields}
    async with http.post(f"{stack.url}/snippets", data=data, allow_redirects=False,
                         headers={"Cookie": f"{COOKIE_NAME}={csrf}"}) as response:
        assert response.status == 303, await response.text()
        ident = response.headers["Location"].rsplit("/", 1)[1]
        cookie = response.cookies[f"owner_{ident}"]
    assert cookie["httponly"] and cookie["path"] == f"/snippets/{ident}"
    assert cookie["samesite"] == "Lax"
    return ident, cookie.value, csrf


def cookies(csrf: str, ident: str | None = None, owner: str | None = None) -> dict[str, str]:
    jar = f"{COOKIE_NAME}={csrf}" + (f"; owner_{ident}={owner}" if owner else "")
    return {"Cookie": jar, **HTML}


async def page(http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
               ) -> tuple[int, str]:
    async with http.get(url, headers=headers or HTML) as response:
        return response.status, await response.text()


async def test_new_ids_are_random_and_old_numbers_still_work(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    ids = [(await api_create(http, stack))["id"] for _ in range(20)]
    assert all(NEW_ID.fullmatch(ident) and not ident.isdigit() for ident in ids)
    assert len(set(ids)) == 20
    # a snippet from before random ids keeps its number (migration 4 copies it)
    stack.database.query(
        "INSERT INTO snippets (slug, language, plain_code, status, created_at, updated_at)"
        " VALUES ('777001', 'python', 'old = True', 'pending', ?, ?)",
        ("2026-01-01 00:00:00.000", "2026-01-01 00:00:00.000"))
    status, text = await page(http, f"{stack.url}/snippets/777001")
    assert status == 200 and "old = True" in text
    for bad in ("1", "777002", "short", "x" * 40, "a.b-c_d.efg"):
        assert (await page(http, f"{stack.url}/snippets/{bad}"))[0] == 404


async def test_the_owner_token_guards_delete_and_rehighlight(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    created = await api_create(http, stack)
    ident, token = created["id"], created["owner_token"]
    assert created["url"] == f"{stack.url}/snippets/{ident}"
    (stored,) = stack.database.query("SELECT owner_hash FROM snippets WHERE slug = ?", (ident,))
    assert stored[0] == hashlib.sha256(token.encode()).hexdigest()
    assert not stack.database.query(  # the token itself is nowhere in the row
        "SELECT 1 FROM snippets WHERE plain_code = ? OR owner_hash = ?", (token, token))
    api = f"{stack.url}/api/snippets/{ident}"
    for headers in ({}, bearer("wrong"), {"Authorization": token}):
        async with http.delete(api, headers=headers) as response:
            assert response.status == 403, await response.text()
        async with http.post(f"{api}/highlight", json={}, headers=headers) as response:
            assert response.status == 403
    async with http.delete(f"{stack.url}/api/snippets/Zz9_unknown1", headers=bearer(token)) as r:
        assert r.status == 404
    async with http.post(f"{api}/highlight", json={"language": "ruby"},
                         headers=bearer(token)) as response:
        assert response.status == 202
        assert (await response.json())["language"] == "ruby"
    async with http.delete(api, headers=bearer(token)) as response:
        assert response.status == 204
    async with http.get(api) as response:
        assert response.status == 404


async def test_the_creating_browser_owns_its_snippet(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    ident, owner, csrf = await form_create(http, stack)
    url = f"{stack.url}/snippets/{ident}"
    _, mine = await page(http, url, cookies(csrf, ident, owner))
    _, theirs = await page(http, url, cookies(csrf))
    assert f"/snippets/{ident}/delete" in mine and f"/snippets/{ident}/edit" in mine
    assert f"/snippets/{ident}/delete" not in theirs and f"/snippets/{ident}/edit" not in theirs
    assert f"/snippets/{ident}/fork" in theirs
    # a stranger's form delete, language change and edit page: 403
    for path, data in (("delete", {}), ("language", {"language": "ruby"})):
        async with http.post(f"{url}/{path}", data={FIELD_NAME: csrf, **data},
                             headers=cookies(csrf), allow_redirects=False) as response:
            assert response.status == 403
    assert (await page(http, f"{url}/edit", cookies(csrf)))[0] == 403
    status, edit = await page(http, f"{url}/edit", cookies(csrf, ident, owner))
    assert status == 200 and 'name="parent"' in edit and ident in edit
    async with http.post(f"{url}/language", data={FIELD_NAME: csrf, "language": "ruby"},
                         headers=cookies(csrf, ident, owner), allow_redirects=False) as response:
        assert response.status == 303
    assert (await wait_for_snippet(http, stack.url, ident))["language"] == "ruby"
    async with http.post(f"{url}/delete", data={FIELD_NAME: csrf},
                         headers=cookies(csrf, ident, owner), allow_redirects=False) as response:
        assert response.status == 303
    assert (await page(http, url))[0] == 404
    async with http.post(f"{stack.url}/snippets/Zz9_unknown1/delete", data={FIELD_NAME: csrf},
                         headers=cookies(csrf), allow_redirects=False) as response:
        assert response.status == 404


async def test_a_fork_is_a_new_snippet_that_links_to_its_parent(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    parent = await api_create(http, stack, title="parent.py")
    status, form = await page(http, f"{stack.url}/snippets/{parent['id']}/fork")
    assert status == 200 and parent["code"] in form  # the form comes filled in
    ident, _, _ = await form_create(http, stack, parent=parent["id"],
                                    plain_code="x = 2  # changed")
    child = await wait_for_snippet(http, stack.url, ident)
    assert child["parent_id"] == parent["id"] and child["code"] == "x = 2  # changed"
    assert (await wait_for_snippet(http, stack.url, parent["id"]))["code"] == parent["code"]
    _, text = await page(http, f"{stack.url}/snippets/{ident}")
    assert f'href="/snippets/{parent["id"]}"' in text


async def test_only_public_snippets_are_listed_a_page_at_a_time(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    hidden = await api_create(http, stack)
    assert hidden["visibility"] == "unlisted"
    listed = [(await api_create(http, stack, visibility="public"))["id"] for _ in range(21)]
    async with http.get(f"{stack.url}/api/snippets") as response:
        first = await response.json()
    async with http.get(f"{stack.url}/api/snippets?page=2") as response:
        second = await response.json()
    assert len(first["snippets"]) == 20 and first["next_page"] == 2
    shown = [item["id"] for item in first["snippets"] + second["snippets"]]
    assert shown[:21] == listed[::-1] and hidden["id"] not in shown
    _, front = await page(http, f"{stack.url}/")
    _, front2 = await page(http, f"{stack.url}/?page=2")
    assert listed[-1] in front and listed[0] not in front and listed[0] in front2
    assert hidden["id"] not in front + front2
    assert (await page(http, f"{stack.url}/?page=zero"))[0] == 400
    async with http.post(f"{stack.url}/api/snippets",
                         json={"language": "python", "code": "x", "visibility": "secret"}) as r:
        assert r.status == 400 and "visibility" in (await r.json())["fields"]


async def test_titles_are_checked_and_escaped(http: aiohttp.ClientSession, stack: Stack) -> None:
    for title in ("t" * 201, "two\nlines"):
        async with http.post(f"{stack.url}/api/snippets",
                             json={"language": "python", "code": "x", "title": title}) as r:
            assert r.status == 400 and "title" in (await r.json())["fields"]
    created = await api_create(http, stack, title="<script>alert(1)</script>.py")
    _, text = await page(http, f"{stack.url}/snippets/{created['id']}")
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text


@pytest.mark.parametrize(("title", "code", "language"), [
    ("build.rb", "puts 1\n", "ruby"),  # the file name decides
    (None, "#!/usr/bin/env python3\nimport sys\nprint(sys.argv)\n", "python"),  # a guess
    (None, '{"a": [1, 2]}', "json"),
    (None, "just some words", "text"),
])
async def test_auto_detects_the_language(http: aiohttp.ClientSession, stack: Stack,
                                         title: str | None, code: str, language: str) -> None:
    created = await api_create(http, stack, language="auto", code=code, title=title)
    assert (created["language"], created["detected"]) == (language, True)
    _, text = await page(http, f"{stack.url}/snippets/{created['id']}")
    assert "(detected)" in text


async def test_expiry_choices_and_the_page_shows_the_expiry(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    for choice, days in (("1mo", 30), ("1y", 365)):
        created = await api_create(http, stack, expires_in=choice)
        expires = datetime.fromisoformat(created["expires_at"].replace("Z", "+00:00"))
        assert abs(expires - datetime.now(UTC) - timedelta(days=days)) < timedelta(minutes=1)
        _, text = await page(http, f"{stack.url}/snippets/{created['id']}")
        assert "Expires" in text and expires.strftime("%Y-%m-%d %H:%M UTC") in text


async def test_burn_after_reading_is_read_once_by_someone_else(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    created = await api_create(http, stack, burn_after_reading=True)
    ident, token = created["id"], created["owner_token"]
    api = f"{stack.url}/api/snippets/{ident}"
    for _ in range(2):  # the owner reads it as often as they like
        async with http.get(api, headers=bearer(token)) as response:
            assert response.status == 200
    async with http.get(api) as response:  # the first stranger's read
        assert (await response.json())["code"] == created["code"]
    async with http.get(api) as response:
        assert response.status == 404
    # through the form: the creator's redirect does not count; a stranger is asked first
    code = unique("burn = 'me'")
    ident, owner, csrf = await form_create(http, stack, plain_code=code, burn_after_reading="1")
    url = f"{stack.url}/snippets/{ident}"
    _, mine = await page(http, url, cookies(csrf, ident, owner))
    assert code in shown(mine) and "deleted after" in mine
    _, warning = await page(http, url, cookies(csrf))
    assert "deleted after you view it" in warning and "burn = " not in warning
    assert (await page(http, url, cookies(csrf)))[0] == 200  # still there: not shown yet
    async with http.post(f"{url}/read", data={FIELD_NAME: csrf},
                         headers=cookies(csrf)) as response:
        assert response.status == 200
        assert code in shown(await response.text())
    assert (await page(http, url, cookies(csrf)))[0] == 404


async def test_burn_after_reading_has_one_reader_among_many_at_once(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    for path in ("/api/snippets/{}", "/snippets/{}/raw", "/snippets/{}?format=text"):
        created = await api_create(http, stack, burn_after_reading=True)
        url = stack.url + path.format(created["id"])

        async def read_once(url: str = url) -> int:
            async with http.get(url) as response:
                return response.status

        statuses = await asyncio.gather(*(read_once() for _ in range(12)))
        assert sorted(statuses) == [200] + [404] * 11, (path, statuses)


async def test_a_look_does_not_use_up_a_burn_after_reading_snippet(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    created = await api_create(http, stack, burn_after_reading=True)
    url = f"{stack.url}/snippets/{created['id']}"
    for _ in range(2):
        for asked in ("?format=text", "?format=ansi", "/raw"):  # a HEAD only looks
            async with http.head(url + asked) as response:
                assert response.status == 200
        async with http.get(url) as response:  # a link preview asking for */*
            assert response.status == 409 and "format=text" in await response.text()
            assert response.headers["Cache-Control"] == "no-store"
        async with http.get(f"{url}/code") as response:  # only its page's button shows it
            assert response.status == 404
    async with http.get(f"{url}?format=text") as response:
        assert await response.text() == created["code"]
        assert response.headers["Cache-Control"] == "no-store"
    async with http.get(f"{url}?format=text") as response:
        assert response.status == 404


async def test_a_public_fork_of_an_unlisted_snippet_does_not_publish_its_link(
        http: aiohttp.ClientSession, stack: Stack) -> None:
    unlisted = await api_create(http, stack)
    public = await api_create(http, stack, visibility="public")
    hidden = await api_create(http, stack, parent=unlisted["id"], visibility="public")
    kept = await api_create(http, stack, parent=unlisted["id"])
    shown = await api_create(http, stack, parent=public["id"], visibility="public")
    assert (hidden["parent_id"], kept["parent_id"], shown["parent_id"]) == (
        None, unlisted["id"], public["id"])
