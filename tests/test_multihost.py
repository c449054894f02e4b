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
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from arq.jobs import Job
from redis.asyncio import Redis

from snippet_service import deadset, workers
from snippet_service.queue import deserialize, highlight_target
from tests.conftest import STACKS, fresh_redis_url, queued_jobs
from tests.databases import PostgresDatabase
from tests.helpers import until
from tests.postgres import PrivatePostgres
from tests.servers import ROOT, Process, base_env, start_listening

pytestmark = [pytest.mark.serial, pytest.mark.timeout(150)]

PROCFILE = ROOT / "deploy" / "Procfile"
SNIPPETS = 2000
REHIGHLIGHTS = 100
CLIENTS = 32
JOB_TIMEOUT = 2.0
IN_PROGRESS_TIMEOUT = JOB_TIMEOUT + 15  # arq: the job's timeout (JOB_TIMEOUT + 5) + 10
LIVE_WITHIN = 3.0
SETTLE = LIVE_WITHIN + 2.0  # a beat every LIVE_WITHIN / 6; then the record expires
WORKER_HOSTS = ("worker-a", "worker-b", "worker-c")
STOPPED, KILLED, SURVIVOR = WORKER_HOSTS
_BUSY_WORKER = re.compile(r"<h2>(.+?) · pid (\d+)</h2>")


def procfile() -> dict[str, list[str]]:
    """deploy/Procfile: each kind of process and its command, the console scripts resolved
    in this interpreter's environment (as an installed virtualenv's bin on PATH would)."""
    bin_dir = Path(sys.executable).parent
    commands = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            argv = shlex.split(command)
            commands[name.strip()] = [str(bin_dir / argv[0]), *argv[1:]]
    return commands


@dataclass
class Host:
    """The processes of one machine, with its HOSTNAME."""

    name: str
    processes: dict[str, Process] = field(default_factory=dict)
    url: str = ""

    def tree(self, kinds: tuple[str, ...]) -> list[psutil.Process]:
        """The processes of these kinds, children (render processes) included."""
        found = []
        for process in (self.processes[kind] for kind in kinds if kind in self.processes):
            with_children = [psutil.Process(process.pid)]
            try:
                with_children += with_children[0].children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            found += with_children
        return found

    def signal(self, sig: int, kinds: tuple[str, ...] = ("web", "worker", "highlighter")
               ) -> None:
        """Send ``sig`` to every process of the host (or of these kinds)."""
        for process in self.tree(kinds):
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                pass


class Cluster:
    """The hosts, started from the Procfile with one environment each."""

    def __init__(self, env: dict[str, str], log_dir: Path, database: SharedDatabase) -> None:
        self.env, self.log_dir, self.database = env, log_dir, database
        self.url = "several hosts"
        self.commands = procfile()
        self.hosts: dict[str, Host] = {}

    def start(self) -> None:
        names = ["web-a", "web-b", *WORKER_HOSTS]
        self.hosts = {name: Host(name) for name in names}
        with ThreadPoolExecutor(len(names)) as pool:  # the highlighters start together
            ports = dict(zip(names, pool.map(self._highlighter, names), strict=True))
        with ThreadPoolExecutor(len(names)) as pool:
            list(pool.map(lambda name: self._web_or_worker(name, ports[name]), names))

    def _start(self, host: Host, kind: str, env: dict[str, str],
               port_variable: str | None = None) -> int:
        name = f"{host.name}-{kind}"
        env = {**self.env, **env, "HOSTNAME": host.name}
        if port_variable is None:
            host.processes[kind] = Process(name, self.commands[kind], env, self.log_dir)
            return 0
        process, port = start_listening(name, lambda port: Process(
            name, self.commands[kind], {**env, port_variable: str(port)}, self.log_dir))
        host.processes[kind] = process
        return port

    def _highlighter(self, name: str) -> int:
        return self._start(self.hosts[name], "highlighter", {}, "HIGHLIGHTER_PORT")

    def _web_or_worker(self, name: str, highlighter_port: int) -> None:
        host = self.hosts[name]
        env = {"HIGHLIGHTER_URL": f"http://127.0.0.1:{highlighter_port}/"}
        if name.startswith("web"):
            host.url = f"http://127.0.0.1:{self._start(host, 'web', env, 'PORT')}"
        else:
            self._start(host, "worker", env)

    @property
    def webs(self) -> list[Host]:
        return [host for host in self.hosts.values() if host.url]

    def logs(self) -> str:
        return "\n".join(f"--- {process.name} ---\n{process.log()[-3000:]}"
                         for host in self.hosts.values()
                         for process in host.processes.values())

    def stop(self) -> None:
        for host in self.hosts.values():
            host.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        for kind in ("web", "worker", "highlighter"):
            for host in self.hosts.values():
                if kind in host.processes:
                    host.processes[kind].stop()


@dataclass
class Sample:
    """Live workers as one look at /healthz (both web processes) and the Busy page saw."""

    at: float
    health: list[set[str]]
    busy: set[str]


class Monitor:
    """Looks at /healthz on every web process and at the Busy page, every 0.2 s; each
    worker must show under its own host and pid."""

    def __init__(self, http: aiohttp.ClientSession, cluster: Cluster) -> None:
        self.http, self.webs = http, cluster.webs
        self.pids = {host.name: host.processes["worker"].pid
                     for host in cluster.hosts.values() if "worker" in host.processes}
        self.samples: list[Sample] = []

    def _hosts(self, shown: list[tuple[str, int]]) -> set[str]:
        assert all(self.pids[host] == pid for host, pid in shown), (shown, self.pids)
        return {host for host, _ in shown}

    async def look(self) -> Sample:
        health = []
        for web in self.webs:
            async with self.http.get(f"{web.url}/healthz") as response:
                body = await response.json()
            assert (body["host"], body["pid"]) == (web.name, web.processes["web"].pid)
            assert body["checks"]["workers"] == len(body["workers"])
            health.append(self._hosts([(worker["host"], worker["pid"])
                                       for worker in body["workers"]]))
        async with self.http.get(f"{self.webs[len(self.samples) % 2].url}/jobs/busy") as page:
            assert page.status == 200
            busy = self._hosts([(host, int(pid))
                                for host, pid in _BUSY_WORKER.findall(await page.text())])
        sample = Sample(time.monotonic(), health, busy)
        self.samples.append(sample)
        return sample

    async def run(self) -> None:
        while True:
            await self.look()
            await asyncio.sleep(0.2)  # the sampling rate

    def seen(self, since: float, until_: float = float("inf")) -> list[set[str]]:
        """Every view of the live workers taken between the two times."""
        return [view for sample in self.samples if since <= sample.at <= until_
                for view in (*sample.health, sample.busy)]


# Every write of highlighted code, with the snippet's id and revision (see the docstring).
COUNT_WRITES = """
    CREATE TABLE revision_writes (snippet_id BIGINT, revision INTEGER);
    CREATE FUNCTION count_revision_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO revision_writes VALUES (NEW.id, NEW.revision); RETURN NEW; END $$;
    CREATE TRIGGER count_revision_writes AFTER UPDATE OF highlighted_code ON snippets
    FOR EACH ROW WHEN (NEW.highlighted_code IS NOT NULL)
    EXECUTE FUNCTION count_revision_write();
"""


class SharedDatabase:
    """The one PostgreSQL database of every host, as the test reads it behind their back."""

    def __init__(self, url: str) -> None:
        self.env = {"DATABASE_URL": url}
        self._database = PostgresDatabase(url)

    async def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        return await asyncio.to_thread(self._database.query, sql)

    async def count_writes(self) -> None:
        """Install the trigger that records each write (id, revision)."""
        await asyncio.to_thread(self._database.script, COUNT_WRITES)

    async def writes(self) -> Counter[tuple[int, int]]:
        """How many times each (snippet id, revision) was written."""
        rows = await self._rows("SELECT snippet_id, revision, count(*) FROM revision_writes"
                                " GROUP BY snippet_id, revision")
        return Counter({(int(row[0]), int(row[1])): int(row[2]) for row in rows})

    async def states(self) -> dict[int, tuple[str, int]]:
        """Each snippet's status and revision."""
        rows = await self._rows("SELECT id, status, revision FROM snippets")
        return {int(row[0]): (str(row[1]), int(row[2])) for row in rows}


async def settled(database: SharedDatabase, jobs: list[str]) -> bool:
    """Whether the revision each job names is no longer pending (written, or superseded by
    a newer revision)."""
    states = await database.states()
    for job_id in jobs:
        target = highlight_target(job_id)
        assert target is not None
        status, revision = states[target[0]]
        if status == "pending" and revision == target[1]:
            return False
    return True


async def all_highlighted(database: SharedDatabase, ids: list[int]) -> bool:
    states = await database.states()
    return all(states[snippet_id][0] == "highlighted" for snippet_id in ids)


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
                        created: list[int]) -> dict[str, int]:
    """2,000 snippets through the API, alternating between the web processes, 32 at once;
    half-way, the first 100 are highlighted again. The creations per web host."""
    per_web = {web.name: 0 for web in webs}
    numbers = iter(range(SNIPPETS))

    async def client() -> None:
        for n in numbers:
            web = webs[n % len(webs)]
            code = f"def snippet_{n}(x):\n    return x * {n}  # {n}\n"
            async with http.post(f"{web.url}/api/snippets",
                                 json={"language": "python", "code": code}) as response:
                assert response.status == 201, await response.text()
                created.append((await response.json())["id"])
            per_web[web.name] += 1
            if n == SNIPPETS // 2:
                for snippet_id in created[:REHIGHLIGHTS]:
                    async with http.post(f"{webs[snippet_id % 2].url}/api/snippets/"
                                         f"{snippet_id}/highlight", json={}) as again:
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

    created: list[int] = []
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

