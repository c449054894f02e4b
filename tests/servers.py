"""Real processes for the tests: Valkey, the highlighter, the worker and the web app.

Every server gets a free port of its own. Tests run in several processes at once
(pytest-xdist), so a port found free may be taken by another test before our server binds
it: a server is started on a new port until it is the one listening (``start_listening``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import psutil

from snippet_service.valkey import ValkeyStartError, free_port, start_valkey
from tests.databases import PostgresDatabase, SqliteFile, TestDatabase
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent
START_ATTEMPTS = 5


class Process:
    """A child process whose output goes to a log file the test can show on failure."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args, cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the process and wait for it; kill it if it will not stop."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def python(name: str, args: list[str], env: Mapping[str, str], log_dir: Path) -> Process:
    return Process(name, [sys.executable, *args], env, log_dir)


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself listens on ``port`` (not some other test's server)."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return False
    return any(conn.status == psutil.CONN_LISTEN and conn.laddr.port == port
               for conn in connections)


def start_listening(name: str, start: Callable[[int], Process],
                    timeout: float = 30.0) -> tuple[Process, int]:
    """``start(port)`` on a free port until the process it starts listens there; the
    process and its port. A process that exits first (the port was taken in between) is
    started again on another port."""
    logs = ""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        process = start(port)
        if _listening_or_exited(name, process, port, timeout):
            return process, port
        process.stop()
        logs = process.log()
    raise RuntimeError(f"{name} did not start in {START_ATTEMPTS} attempts:\n{logs}")


def _listening_or_exited(name: str, process: Process, port: int, timeout: float) -> bool:
    """Wait until ``process`` listens on ``port`` (True) or exits (False)."""
    wait_until(lambda: process.popen.poll() is not None or listens_on(process.pid, port),
               timeout, lambda: f"{name} is not listening on {port}:\n{process.log()}")
    return process.popen.poll() is None


def start_private_valkey(data_dir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A private Valkey (no persistence) on a free port that is really its own."""
    for _ in range(START_ATTEMPTS):
        port = free_port()
        server = _valkey_on(port, data_dir)
        if server is not None:
            return server, port
    raise RuntimeError(f"valkey-server did not start in {START_ATTEMPTS} attempts")


class OwnValkey:
    """A private Valkey on a port of its own that a test may kill and start again (empty),
    or stop (SIGSTOP: every call to it hangs)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process, self.port = start_private_valkey(data_dir)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = start_valkey(self.port, self.data_dir, persistent=False)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped one, too
            self.process.kill()
        self.process.wait()

    def hang(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        wait_until(lambda: psutil.Process(self.process.pid).status() == psutil.STATUS_STOPPED,
                   5, "valkey-server did not stop")


def _valkey_on(port: int, data_dir: Path) -> subprocess.Popen[bytes] | None:
    """valkey-server listening on ``port`` itself, or None if it could not."""
    try:
        server = start_valkey(port, data_dir, persistent=False)
    except ValkeyStartError:
        return None
    wait_until(lambda: server.poll() is not None or listens_on(server.pid, port), 10,
               "valkey-server neither listened nor exited")
    return server if server.poll() is None else None


def python_server(name: str, args: list[str], env: Mapping[str, str], log_dir: Path,
                  port_variable: str | None = None) -> tuple[Process, int]:
    """``python ARGS`` as a server on a port of its own, given in ``port_variable`` (or,
    without one, as the last argument); the process and its port."""

    def start(port: int) -> Process:
        if port_variable is None:
            return python(name, [*args, str(port)], env, log_dir)
        return python(name, args, {**env, port_variable: str(port)}, log_dir)

    return start_listening(name, start)


def base_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in (
        "REDIS_URL", "HIGHLIGHTER_URL", "PORT", "HIGHLIGHTER_PORT", "SNIPPETS_DB",
        "DATABASE_URL")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


class Stack:
    """The highlighter (ours unless a URL is given), a worker and the web app on free ports,
    on a SQLite file of their own or, with ``database_url``, that PostgreSQL database
    (``database``: the test's own access to it).

    The suite creates hundreds of snippets a minute from 127.0.0.1, so the creation rate
    limits (snippets and bytes a minute, bytes a day) are off unless a test passes its own.
    Build one with the ``make_stack`` fixture, which also stops it and shows its logs when
    a test fails.
    """

    def __init__(self, redis_url: str, work_dir: Path, highlighter_url: str | None = None,
                 database_url: str | None = None, **extra_env: str) -> None:
        self.work_dir = work_dir
        self.db_path = work_dir / "snippets.db"
        self.database: TestDatabase = (PostgresDatabase(database_url) if database_url
                                       else SqliteFile(self.db_path))
        self.redis_url = redis_url
        self.processes: list[Process] = []
        where = {"DATABASE_URL": database_url} if database_url else {}
        env = base_env(REDIS_URL=redis_url, SNIPPETS_DB=str(self.db_path), **where,
                       **{"RATE_LIMIT_PER_MINUTE": "0", "RATE_LIMIT_BYTES_PER_MINUTE": "0",
                          "DAILY_BYTES_PER_CLIENT": "0", **extra_env})
        try:
            if highlighter_url is None:
                self.highlighter, highlighter_port = python_server(
                    "highlighter", ["-m", "snippet_service.highlighter"], env, work_dir,
                    "HIGHLIGHTER_PORT")
                self.processes.append(self.highlighter)
                env["HIGHLIGHTER_PORT"] = str(highlighter_port)
                highlighter_url = f"http://127.0.0.1:{highlighter_port}/"
            self.highlighter_url = highlighter_url
            env["HIGHLIGHTER_URL"] = highlighter_url
            self.web, self.port = python_server("web", ["run_web.py"], env, work_dir, "PORT")
            self.processes.append(self.web)
            env["PORT"] = str(self.port)
            self.env = env
            self.url = f"http://127.0.0.1:{self.port}"
            self.worker: Process | None = None
            self.start_worker()
        except BaseException:
            self.stop()
            raise

    def start_worker(self) -> Process:
        """Start a worker (another one, or again after a test stopped it)."""
        worker = self.worker = python("worker", ["run_worker.py"], self.env, self.work_dir)
        self.processes.append(worker)

        def started() -> bool:
            if worker.popen.poll() is not None:
                raise RuntimeError("the worker exited:\n" + worker.log())
            return "Starting worker" in worker.log()

        wait_until(started, 20, lambda: "the worker did not start:\n" + worker.log())
        return worker

    def start_web(self, name: str) -> tuple[Process, str]:
        """Another web process on the same database and Redis; it and its URL."""
        web, port = python_server(name, ["run_web.py"], self.env, self.work_dir, "PORT")
        self.processes.append(web)
        return web, f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
