"""Several hosts against one Valkey and one PostgreSQL, started from ``deploy/Procfile``.

Two web hosts (``web-a``, ``web-b``) and three worker hosts (``worker-a``, ``-b``, ``-c``),
each host with its own highlighter on loopback, every process named by its ``HOSTNAME``.
2,000 snippets go in through both web processes (and some are highlighted again as a new
revision). Meanwhile one worker host is cut off (SIGSTOP of its worker and highlighter for
longer than the in-progress timeout, then SIGCONT) and another is killed outright (SIGKILL).

How "written twice" is seen: a trigger in the test's own database records every UPDATE
that stores highlighted code, with the snippet's id and revision. The worker writes only a
revision that is still pending, so a job that runs twice (its in-progress mark expired
while the stopped host held it, or it was rerun after the kill) must leave one record per
revision; a second record would be a second write. Nothing lost: every snippet ends
``highlighted`` at its last revision, with that revision's record, the dead set is empty
and the queue drains.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from arq.jobs import Job
from redis.asyncio import Redis

from snippet_service import deadset, workers
from snippet_service.queue import deserialize, highlight_target
from tests.conftest import STACKS, fresh_redis_url, queued_jobs
from tests.helpers import until
from tests.multihost import (
    CLIENTS,
    IN_PROGRESS_TIMEOUT,
    JOB_TIMEOUT,
    KILLED,
    LIVE_WITHIN,
    REHIGHLIGHTS,
    SETTLE,
    SNIPPETS,
    STOPPED,
    SURVIVOR,
    WORKER_HOSTS,
    Cluster,
    Host,
    Monitor,
    SharedDatabase,
    all_highlighted,
    procfile,
    settled,
)
from tests.postgres import PrivatePostgres
from tests.servers import ROOT, base_env

pytestmark = [pytest.mark.serial, pytest.mark.timeout(150)]


@pytest.fixture
def cluster(valkey: str, postgres: PrivatePostgres, tmp_path: Path,
            request: pytest.FixtureRequest) -> Iterator[Cluster]:
    database = SharedDatabase(postgres.create_database())
    env = base_env(
        REDIS_URL=fresh_redis_url(valkey), **database.env,
        RATE_LIMIT_PER_MINUTE="0", RATE_LIMIT_BYTES_PER_MINUTE="0",
        DAILY_BYTES_PER_CLIENT="0", MIN_FREE_DISK_MB="0",
        JOB_TIMEOUT=str(JOB_TIMEOUT), HIGHLIGHT_RENDER_SECONDS="1.5",
        RETRY_DELAY_SCALE="0.01", WORKER_LIVE_WITHIN=str(LIVE_WITHIN),
        WORKER_MAX_JOBS="50", HIGHLIGHTER_QUEUE="256", WORKER_SHUTDOWN_GRACE="1")
    running = Cluster(env, tmp_path, database)
    request.node.stash.setdefault(STACKS, []).append(running)  # its logs if the test fails
    try:
        running.start()
        yield running
    finally:
        running.stop()


@pytest.fixture
async def redis_client(cluster: Cluster) -> AsyncIterator[Redis]:
    client = Redis.from_url(cluster.env["REDIS_URL"])
    yield client
    await client.aclose()


async def live(redis: Redis) -> dict[str, workers.WorkerInfo]:
    return {info.host: info for info in await workers.live_workers(redis)}


async def live_hosts_are(redis: Redis, wanted: set[str]) -> bool:
    return set(await live(redis)) == wanted


async def holding_jobs(redis: Redis, host: str, since: float) -> list[str]:
    """The highlight jobs ``host``'s worker held at a beat after ``since`` (wall clock)."""
    info = (await live(redis)).get(host)
    if info is None or info.seen_at <= since:
        return []
    return [job.job_id for job in info.running if highlight_target(job.job_id)]


async def idle_since(redis: Redis, host: str, since: float) -> bool:
    """Whether ``host``'s worker beat after ``since`` (wall clock) running no highlight job."""
    info = (await live(redis)).get(host)
    return info is not None and info.seen_at > since and not any(
        highlight_target(job.job_id) for job in info.running)


async def cut_highlighter_then(redis: Redis, host: Host, sig: int) -> list[str]:
    """Stop ``host``'s highlighter, so the jobs its worker runs hang; once a beat shows the
    worker holding some, send ``sig`` to the whole host. Returns the jobs it held."""
    stopped_at = time.time()
    host.signal(signal.SIGSTOP, ("highlighter",))
    held: list[str] = await until(lambda: holding_jobs(redis, host.name, stopped_at),
                                  JOB_TIMEOUT, f"{host.name} never held a job")
    host.signal(sig)
    return held


async def post_snippets(http: aiohttp.ClientSession, webs: list[Host],
                        created: list[str]) -> dict[str, int]:
    """2,000 snippets through the API, alternating between the web processes, 32 at once;
    half-way, the first 100 are highlighted again. The creations per web host."""
    per_web = {web.name: 0 for web in webs}
    numbers = iter(range(SNIPPETS))
    tokens: dict[str, str] = {}  # each snippet's owner token

    async def client() -> None:
        for n in numbers:
            web = webs[n % len(webs)]
            code = f"def snippet_{n}(x):\n    return x * {n}  # {n}\n"
            async with http.post(f"{web.url}/api/snippets",
                                 json={"language": "python", "code": code}) as response:
                assert response.status == 201, await response.text()
                body = await response.json()
                tokens[body["id"]] = body["owner_token"]
                created.append(body["id"])
            per_web[web.name] += 1
            if n == SNIPPETS // 2:
                for m, snippet_id in enumerate(created[:REHIGHLIGHTS]):
                    async with http.post(
                            f"{webs[m % 2].url}/api/snippets/{snippet_id}/highlight", json={},
                            headers={"Authorization": f"Bearer {tokens[snippet_id]}"}
                    ) as again:
                        assert again.status == 202, await again.text()

    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return per_web


async def test_two_web_and_three_worker_hosts_lose_nothing_and_write_once(
        cluster: Cluster, redis_client: Redis, http: aiohttp.ClientSession) -> None:
    redis, database, webs = redis_client, cluster.database, cluster.webs
    everyone = set(WORKER_HOSTS)
    await until(lambda: live_hosts_are(redis, everyone), 30, "not every worker beat")
    monitor = Monitor(http, cluster)
    first = await monitor.look()
    assert first.busy == everyone and all(view == everyone for view in first.health)
    await database.count_writes()

    created: list[str] = []
    watching = asyncio.create_task(monitor.run())
    posting = asyncio.create_task(post_snippets(http, webs, created))
    try:
        await until(lambda: len(created) >= SNIPPETS // 5, 60, "the snippets do not go in")
        stopped = cluster.hosts[STOPPED]
        held_by_stopped = await cut_highlighter_then(redis, stopped, signal.SIGSTOP)
        stopped_at = time.monotonic()
        held_by_killed = await cut_highlighter_then(redis, cluster.hosts[KILLED],
                                                    signal.SIGKILL)
        killed_at = time.monotonic()
        await until(lambda: live_hosts_are(redis, {SURVIVOR}), SETTLE + 2,
                    "the stopped and the killed hosts still show as live")
        # Their jobs run again elsewhere once the in-progress marks expire.
        for held in (held_by_stopped, held_by_killed):
            await until(lambda held=held: settled(database, held),
                        IN_PROGRESS_TIMEOUT + 15, f"jobs {held[:5]}… never ran again")
        assert time.monotonic() - stopped_at > IN_PROGRESS_TIMEOUT
        stopped.signal(signal.SIGCONT)
        resumed_at, resumed_wall = time.monotonic(), time.time()
        await until(lambda: live_hosts_are(redis, {STOPPED, SURVIVOR}), SETTLE,
                    "the stopped host did not come back")
        # The resumed worker ends the runs it held (their time is long up) and finds their
        # revisions no longer pending; then it is idle.
        await until(lambda: idle_since(redis, STOPPED, resumed_wall), 30,
                    "the resumed worker never went idle")
        # Its late finishes were refused (the claim in the in-progress key is no longer
        # its own): the results the other workers stored stand.
        for job_id in held_by_stopped:
            info = await Job(job_id, redis, _deserializer=deserialize).result_info()
            assert info is not None and info.success, (job_id, info)
        per_web = await posting
        await until(lambda: all_highlighted(database, created), 60,
                    "not every snippet was highlighted")
        await until(lambda: queued_jobs(cluster.env["REDIS_URL"]) == 0, 30,
                    "jobs are left in the queue")
        await until(lambda: len(monitor.seen(resumed_at + SETTLE)) > 10, SETTLE + 10,
                    "the monitor stopped looking")
        if watching.done():  # a look that failed ended the monitor
            watching.result()
    finally:
        for task in (watching, posting):
            task.cancel()
        await asyncio.gather(watching, posting, return_exceptions=True)

    # Nothing lost, nothing written twice.
    assert len(created) == len(set(created)) == SNIPPETS
    assert per_web == {"web-a": SNIPPETS // 2, "web-b": SNIPPETS // 2}
    writes = await database.writes()
    twice = {key: count for key, count in writes.items() if count > 1}
    assert not twice, f"written more than once: {sorted(twice.items())[:10]}"
    states = await database.states()
    assert all(writes[snippet_id, states[snippet_id][1]] == 1 for snippet_id in created)
    assert sum(states[snippet_id][1] == 2 for snippet_id in created) == REHIGHLIGHTS
    assert await redis.zcard(deadset.DEAD_SET) == 0

    # The right live workers throughout, on /healthz of both web hosts and the Busy page.
    started = monitor.samples[0].at
    assert all(SURVIVOR in view for view in monitor.seen(started))
    assert all(view == everyone for view in monitor.seen(started, stopped_at - 0.5))
    assert all(KILLED not in view for view in monitor.seen(killed_at + SETTLE))
    assert all(STOPPED not in view for view in monitor.seen(stopped_at + SETTLE, resumed_at))
    assert all(view == {STOPPED, SURVIVOR} for view in monitor.seen(resumed_at + SETTLE))
    assert len(monitor.seen(stopped_at + SETTLE, resumed_at)) > 10


def test_procfile_and_systemd_units_run_the_same_commands() -> None:
    """The systemd units start what the Procfile (which the test above runs) starts."""
    commands = procfile()
    assert set(commands) == {"web", "worker", "highlighter"}
    for kind, argv in commands.items():
        unit = (ROOT / "deploy" / "systemd" / f"snippet-service-{kind}.service").read_text()
        exec_start = re.search(r"^ExecStart=(.+)$", unit, re.MULTILINE)
        assert exec_start is not None
        started = shlex.split(exec_start.group(1))
        assert [os.path.basename(started[0]), *started[1:]] == \
            [os.path.basename(argv[0]), *argv[1:]]
        assert Path(argv[0]).exists(), argv[0]

