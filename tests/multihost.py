"""The cluster of ``tests/test_multihost.py``: hosts started from ``deploy/Procfile``, the
monitor that watches which workers show as live, and the shared database read behind the
hosts' backs."""

from __future__ import annotations

import asyncio
import re
import shlex
import signal
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from snippet_service.queue import highlight_target
from tests.databases import PostgresDatabase
from tests.servers import ROOT, Process, start_listening

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
    CREATE TABLE revision_writes (snippet_id TEXT, revision INTEGER);
    CREATE FUNCTION count_revision_write() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN INSERT INTO revision_writes VALUES (NEW.slug, NEW.revision); RETURN NEW; END $$;
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

    async def writes(self) -> Counter[tuple[str, int]]:
        """How many times each (snippet id, revision) was written."""
        rows = await self._rows("SELECT snippet_id, revision, count(*) FROM revision_writes"
                                " GROUP BY snippet_id, revision")
        return Counter({(str(row[0]), int(row[1])): int(row[2]) for row in rows})

    async def states(self) -> dict[str, tuple[str, int]]:
        """Each snippet's status and revision, by its id."""
        rows = await self._rows("SELECT slug, status, revision FROM snippets")
        return {str(row[0]): (str(row[1]), int(row[2])) for row in rows}


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


async def all_highlighted(database: SharedDatabase, ids: list[str]) -> bool:
    states = await database.states()
    return all(states[snippet_id][0] == "highlighted" for snippet_id in ids)
