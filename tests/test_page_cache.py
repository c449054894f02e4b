"""Finished snippets' pages are cached per web process; a change made through any web
process reaches every other one."""

from __future__ import annotations

import aiohttp

from tests.helpers import HTML, create_via_api, owner, until, wait_for_snippet
from tests.servers import Stack


async def page(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url, headers=HTML) as response:
        assert response.status == 200
        return await response.text()


async def test_rehighlight_through_one_process_updates_another(
        stack: Stack, http: aiohttp.ClientSession) -> None:
    other, other_url = stack.start_web("web-b")
    try:
        created = await create_via_api(http, stack.url, "python", "def cached(): pass")
        await wait_for_snippet(http, stack.url, created["id"])
        path = f"/snippets/{created['id']}"
        for _ in range(2):  # the second answer comes from the cache
            assert '<span class="k">def</span>' in await page(http, other_url + path)
            async with http.get(f"{other_url}/api/snippets/{created['id']}") as response:
                assert (await response.json())["language"] == "python"

        assert stack.worker is not None
        stack.worker.stop()  # no job finishes: only the re-highlight itself is announced
        try:
            async with http.post(f"{stack.url}/api/snippets/{created['id']}/highlight",
                                 json={"language": "text"}, headers=owner(created)) as response:
                assert response.status == 202
            async def stale_copy_gone() -> bool:
                return "Highlighting…" in await page(http, other_url + path)

            await until(stale_copy_gone, 5, "the other process kept its stale copy")
        finally:
            stack.start_worker()
        await wait_for_snippet(http, other_url, created["id"])
        async with http.get(f"{other_url}/api/snippets/{created['id']}") as response:
            body = await response.json()
        assert (body["language"], body["status"], body["revision"]) == ("text", "highlighted", 2)
    finally:
        other.stop()
