"""Who gets /jobs: loopback names only without DASHBOARD_PASSWORD (no DNS rebinding), a
throttle on wrong passwords with it, a log line at start and one per action."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from snippet_service import deadset
from snippet_service.config import Config
from snippet_service.queue import open_pool
from snippet_service.web.dashboard.access import AUTH_FAILURES_PER_MINUTE, is_loopback_host
from tests.conftest import MakeStack
from tests.helpers import form_token, token_cookie, until
from tests.servers import Stack

PASSWORD = "s3cret-enough"
REBOUND = "rebind.attacker.example"


@pytest.fixture
def open_stack(stack: Stack) -> Stack:
    return stack


@pytest.fixture
def locked_stack(make_stack: MakeStack) -> Stack:
    return make_stack(shared=True, DASHBOARD_PASSWORD=PASSWORD)


@pytest.fixture
async def from_127_0_0_2() -> AsyncIterator[aiohttp.ClientSession]:
    """A client whose connections come from another loopback address."""
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"ops:{password}".encode()).decode()}


async def wait_for_log(stack: Stack, pattern: str, timeout: float = 10) -> None:
    await until(lambda: re.search(pattern, stack.web.log()), timeout,
                lambda: f"no {pattern!r} in:\n{stack.web.log()}")


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("LOCALHOST:8080", True), ("127.0.0.1", True), ("127.1.2.3:80", True),
    ("[::1]", True), ("[::1]:8080", True),
    (REBOUND, False), (f"{REBOUND}:8080", False), ("::1", False), ("[::1]x", False),
    ("localhost.attacker.example", False), ("127.0.0.1.nip.io", False), ("10.0.0.1", False),
    ("localhost:http", False), ("", False), ("[::ffff:127.0.0.1]", False),
])
def test_loopback_host_names(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


async def test_a_rebound_host_gets_nothing_and_cannot_act(
        open_stack: Stack, http: aiohttp.ClientSession) -> None:
    url, port = open_stack.url, open_stack.port
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"127.0.0.2:{port}",
                 f"[::1]:{port}"):
        async with http.get(f"{url}/jobs", headers={"Host": host}) as response:
            assert response.status == 200, host
    for host in (REBOUND, f"{REBOUND}:{port}", f"192.0.2.1:{port}"):
        async with http.get(f"{url}/jobs/dead", headers={"Host": host}) as response:
            assert response.status == 403, host
            assert "localhost, 127.0.0.1 or [::1]" in await response.text()

    pool = await open_pool(Config.from_env({"REDIS_URL": open_stack.redis_url}))
    try:
        await deadset.record_dead(pool, deadset.FailedJob(
            "planted", "highlight_snippet", [1], "E", "x", "", 1, 0, time.time()))
        before = await deadset.dead_count(pool)
        token = await form_token(http, url)
        # What a rebinding page would send: same origin as far as its browser knows.
        async with http.post(f"{url}/jobs/dead/delete_all", data={"csrf_token": token},
                             allow_redirects=False,
                             headers={"Host": f"{REBOUND}:{port}", "Sec-Fetch-Site": "same-origin",
                                      "Origin": f"http://{REBOUND}:{port}",
                                      **token_cookie(token)}) as response:
            assert response.status == 403
        assert await deadset.dead_count(pool) == before
    finally:
        await pool.aclose()
    await wait_for_log(open_stack, rf"refused GET /jobs/dead from 127\.0\.0\.1: Host '{REBOUND}'")


async def test_the_start_log_says_how_the_dashboard_is_protected(
        open_stack: Stack, locked_stack: Stack) -> None:
    await wait_for_log(open_stack, r"jobs dashboard /jobs: no password .* loopback only")
    await wait_for_log(locked_stack, r"jobs dashboard /jobs: HTTP basic auth")


async def test_wrong_passwords_are_throttled_per_address(
        locked_stack: Stack, http: aiohttp.ClientSession,
        from_127_0_0_2: aiohttp.ClientSession) -> None:
    url = f"{locked_stack.url}/jobs"
    for _ in range(2 * AUTH_FAILURES_PER_MINUTE):  # no credentials yet: not a failure
        async with http.get(url) as response:
            assert response.status == 401
    async with http.get(url, headers=basic(PASSWORD)) as response:
        assert response.status == 200
    for _ in range(AUTH_FAILURES_PER_MINUTE):
        async with http.get(url, headers=basic("guess")) as response:
            assert response.status == 401
    for headers in (basic("guess"), basic(PASSWORD)):  # blocked: not even checked
        async with http.get(url, headers=headers) as response:
            assert response.status == 429
            assert 1 <= int(response.headers["Retry-After"]) <= 60
    async with from_127_0_0_2.get(url, headers=basic(PASSWORD)) as response:
        assert response.status == 200  # another address is not blocked
    async with http.get(f"{locked_stack.url}/") as response:
        assert response.status == 200  # nor is the rest of the site
    await wait_for_log(locked_stack, r"dashboard: wrong password from 127\.0\.0\.1")


async def test_every_action_is_logged_with_who_and_which_job(
        open_stack: Stack, locked_stack: Stack, http: aiohttp.ClientSession,
        from_127_0_0_2: aiohttp.ClientSession) -> None:
    token = await form_token(http, open_stack.url)
    async with http.post(f"{open_stack.url}/jobs/dead/delete",
                         data=[("csrf_token", token), ("job_id", "gone-1"),
                               ("job_id", "gone-2")],
                         headers=token_cookie(token), allow_redirects=False) as response:
        assert response.status == 303
    await wait_for_log(open_stack, re.escape(
        "dashboard action dead/delete by 127.0.0.1 (loopback, no password): "
        "['gone-1', 'gone-2']"))

    token = await form_token(from_127_0_0_2, locked_stack.url)
    async with from_127_0_0_2.post(
            f"{locked_stack.url}/jobs/dead/retry_all", data={"csrf_token": token},
            headers={**token_cookie(token), **basic(PASSWORD)},
            allow_redirects=False) as response:
        assert response.status == 303
    await wait_for_log(locked_stack, re.escape(
        "dashboard action dead/retry_all by 127.0.0.2 (authenticated): every job"))
