"""Nothing is lost: crashed and stopped workers, Redis outages and restarts, health checks,
planted pickles."""

from __future__ import annotations

import asyncio
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.conftest import MakeStack
from tests.databases import count_highlight_writes, highlight_writes
from tests.helpers import create_via_api, create_via_form, until, wait_for_snippet
from tests.servers import ROOT, OwnValkey, Stack

pytestmark = pytest.mark.spread  # most tests start a stack of their own


async def upstream_calls(http: aiohttp.ClientSession, upstream: str, code: str) -> int:
    async with http.get(upstream + "log", params={"code": code}) as response:
        return len(await response.json())


async def wait_for_calls(http: aiohttp.ClientSession, upstream: str, code: str, n: int,
                         timeout: float = 10) -> None:
    async def called() -> bool:
        return await upstream_calls(http, upstream, code) >= n

    await until(called, timeout, f"the upstream was not called {n} times")


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("backend")  # on SQLite and on PostgreSQL
async def test_sigkilled_worker_job_runs_again_and_writes_once(
        make_stack: MakeStack, flaky_highlighter: str, http: aiohttp.ClientSession) -> None:
    # JOB_TIMEOUT=3: the killed run's in-progress mark expires after 18 s, not 25 s.
    stack = make_stack(highlighter_url=flaky_highlighter, JOB_TIMEOUT="3")
    count_highlight_writes(stack.database)
    code = f"sleep=2 # {uuid.uuid4().hex}"
    created = await create_via_api(http, stack.url, "slow", code)
    await wait_for_calls(http, flaky_highlighter, code, 1)
    assert stack.worker is not None
    stack.worker.stop(signal.SIGKILL)
    killed_at = time.monotonic()
    stack.start_worker()
    body = await wait_for_snippet(http, stack.url, created["id"], timeout=40)
    assert body["status"] == "highlighted"
    assert time.monotonic() - killed_at < 30 + 2  # the rerun starts within 30 s
    assert highlight_writes(stack.database, created["id"]) == 1
    assert await upstream_calls(http, flaky_highlighter, code) == 2


@pytest.mark.parametrize(("grace", "sleep", "retries"), [("10", "1.5", "10"), ("1", "4", "0")],
                         ids=["finishes-within-the-grace", "cancelled-past-the-grace"])
async def test_sigterm_grace(make_stack: MakeStack, flaky_highlighter: str,
                             http: aiohttp.ClientSession, grace: str, sleep: str,
                             retries: str) -> None:
    """SIGTERM lets a running job finish within WORKER_SHUTDOWN_GRACE; past it the job is
    cancelled and runs again later without losing a try (even with retry=False)."""
    stack = make_stack(highlighter_url=flaky_highlighter, WORKER_SHUTDOWN_GRACE=grace,
                       HIGHLIGHT_RETRIES=retries)
    finishes = float(sleep) < float(grace)
    code = f"sleep={sleep} # {uuid.uuid4().hex}"
    created = await create_via_api(http, stack.url, "slow", code)
    await wait_for_calls(http, flaky_highlighter, code, 1)
    assert stack.worker is not None
    started = time.monotonic()
    exit_code = stack.worker.stop(signal.SIGTERM, timeout=20)
    assert time.monotonic() - started < (10 if finishes else 4)
    assert exit_code == 0 or not finishes
    body = await wait_for_snippet(http, stack.url, created["id"], 0)
    if finishes:
        assert body["status"] == "highlighted"
        assert await upstream_calls(http, flaky_highlighter, code) == 1
        return
    assert body["status"] == "pending"  # cancelled after the grace, not finished
    stack.start_worker()
    # retry=False: had the cancelled run counted as a failure, this would be dead now
    body = await wait_for_snippet(http, stack.url, created["id"], timeout=20)
    assert body["status"] == "highlighted"
    assert await upstream_calls(http, flaky_highlighter, code) == 2


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("backend")
async def test_valkey_restarted_empty_loses_no_snippet(
        make_stack: MakeStack, own_valkey: OwnValkey, http: aiohttp.ClientSession) -> None:
    stack = make_stack(redis_url=own_valkey.url, RECONCILE_INTERVAL="1", RECONCILE_AFTER="1")
    assert stack.worker is not None
    stack.worker.stop()
    ids, deferred = [], {}
    for n in range(100):
        if n % 10 == 0:
            created = await create_via_api(http, stack.url, "python", f"d = {n}")
            ids.append(created["id"])
        else:
            ids.append(await create_via_form(http, stack.url, "python", f"n = {n}"))
    async with http.post(f"{stack.url}/api/snippets", json={
            "language": "python", "code": "later = 1", "highlight_in": 3}) as response:
        created = await response.json()
    deferred[created["id"]] = created["highlight_at"]
    ids.append(created["id"])

    own_valkey.kill()
    own_valkey.start()  # empty: every queued and deferred job is gone
    assert redis.Redis.from_url(own_valkey.url).dbsize() == 0
    stack.start_worker()
    for snippet_id in ids:
        body = await wait_for_snippet(http, stack.url, snippet_id, timeout=60)
        assert body["status"] == "highlighted"
    for snippet_id, highlight_at in deferred.items():
        body = await wait_for_snippet(http, stack.url, snippet_id)
        assert body["updated_at"] >= highlight_at  # not before it was asked for


@pytest.mark.timeout(120)
@pytest.mark.usefixtures("backend")
async def test_worker_and_web_ride_out_a_valkey_outage(
        make_stack: MakeStack, own_valkey: OwnValkey, http: aiohttp.ClientSession) -> None:
    stack = make_stack(redis_url=own_valkey.url, RECONCILE_INTERVAL="1", RECONCILE_AFTER="1")
    worker = stack.worker
    assert worker is not None
    own_valkey.kill()
    # Valkey is down: the snippet is still stored, pending, and the answer is a 303
    snippet_id = await create_via_form(http, stack.url, "python", "outage = True")
    assert (await wait_for_snippet(http, stack.url, snippet_id, 0))["status"] == "pending"
    async with http.post(f"{stack.url}/api/snippets",
                         json={"language": "python", "code": "api = 1"}) as response:
        assert response.status == 201
        api_id = (await response.json())["id"]
    await until(lambda: "Redis connection lost" in worker.log(), 10,
                "the worker never noticed the outage")
    assert worker.popen.poll() is None  # still up
    own_valkey.start()
    for ident in (snippet_id, api_id):
        body = await wait_for_snippet(http, stack.url, ident, timeout=30)
        assert body["status"] == "highlighted"


def check_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run_worker.py", "--check"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.timeout(120)
async def test_health_turns_unhealthy_when_the_last_worker_dies(
        make_stack: MakeStack, http: aiohttp.ClientSession, backend: str) -> None:
    stack = make_stack(WORKER_LIVE_WITHIN="3")  # a heartbeat is good for 3 s, not 30

    async def healthy() -> bool:
        return (await asyncio.to_thread(check_worker, stack.env)).returncode == 0

    await until(healthy, 10, "the worker never reported healthy", interval=0.2)
    async with http.get(f"{stack.url}/healthz") as response:
        body = await response.json()
    assert response.status == 200, body
    database = "postgresql" if backend == "postgres" else "sqlite"  # named by its backend
    assert body["checks"] == {database: "ok", "redis": "ok", "workers": 1}

    assert stack.worker is not None
    stack.worker.stop(signal.SIGKILL)

    async def unhealthy() -> bool:
        return not await healthy()

    await until(unhealthy, 30, "still healthy long after the worker died", interval=0.5)
    async with http.get(f"{stack.url}/healthz") as response:
        assert response.status == 503
        assert (await response.json())["checks"]["workers"] == 0
    assert "unhealthy" in check_worker(stack.env).stdout


class Planted:
    """Unpickling this writes a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"__import__('pathlib').Path({str(self.path)!r}).write_text('pwned')",))


async def test_a_planted_pickle_runs_no_code(stack: Stack, tmp_path: Path,
                                             http: aiohttp.ClientSession) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"t": 1, "f": "highlight_snippet", "a": [Planted(marker)], "k": {},
                            "et": int(time.time() * 1000)})
    pickle.loads(payload)  # what a pickle-reading worker would do
    assert marker.exists()
    marker.unlink()

    client = redis.Redis.from_url(stack.redis_url)
    client.set("arq:job:planted", payload)
    client.zadd("snippets:queue", {"planted": int(time.time() * 1000)})
    client.close()
    created = await create_via_api(http, stack.url, "python", "after = 'the pickle'")
    body = await wait_for_snippet(http, stack.url, created["id"])
    assert body["status"] == "highlighted"  # the worker is still up and working
    with redis.Redis.from_url(stack.redis_url) as client:
        await until(lambda: not client.exists("arq:job:planted"), 5,
                    "the planted job was never picked up")
    assert not marker.exists()
    assert "deserializing job planted failed" in stack.worker.log()  # type: ignore[union-attr]
