"""Fixtures that start real servers on free ports: a private Valkey, stacks, a browser.

Under pytest-xdist every worker process has its own Valkey, stand-in highlighters and
stacks, on ports of their own. The tests of one module run on one worker (they share the
module's stacks), except in modules marked ``spread``; tests marked ``serial`` run while
no other test runs.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest
import redis
from playwright.async_api import Browser, Page, async_playwright

from tests.databases import row_count
from tests.postgres import PrivatePostgres
from tests.servers import (
    OwnValkey,
    Process,
    Stack,
    base_env,
    python_server,
    start_private_valkey,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

_databases = itertools.count(1)
STACKS = pytest.StashKey[list[Stack]]()


def in_ci() -> bool:
    """CI=true (as CI services set it): nothing may be skipped for want of a tool."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Valkey server for this test process; yields redis://host:port (no db)."""
    process, port = start_private_valkey(tmp_path_factory.mktemp("valkey"))
    yield f"redis://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL for this test process (started on first use); its
    ``create_database()`` gives the URL of a new, empty database."""
    server = PrivatePostgres()
    yield server
    server.stop()


BACKENDS = ("sqlite", "postgres")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL (ids ``[sqlite]``,
    ``[postgres]``): the stacks ``make_stack`` starts for it and ``db_env`` use that
    backend. A module runs all its tests on both with
    ``pytestmark = pytest.mark.usefixtures("backend")``."""
    return str(request.param)


def _database_url(request: pytest.FixtureRequest) -> str | None:
    """A new PostgreSQL database when the test runs on the ``postgres`` backend."""
    if "backend" not in request.fixturenames or request.getfixturevalue("backend") != "postgres":
        return None
    server: PrivatePostgres = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture
def db_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment naming a new, empty database of the test's backend: SNIPPETS_DB
    (a file in tmp_path), or with the ``backend`` fixture's ``postgres``, DATABASE_URL."""
    url = _database_url(request)
    return {"DATABASE_URL": url} if url else {"SNIPPETS_DB": str(tmp_path / "snippets.db")}


def fresh_redis_url(valkey: str) -> str:
    """A Valkey database of its own, emptied, so stacks do not see each other's jobs."""
    url = f"{valkey}/{next(_databases) % 16}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


class MakeStack(Protocol):
    def __call__(self, *, highlighter_url: str | None = None, redis_url: str | None = None,
                 shared: bool = False, **env: str) -> Stack: ...


@pytest.fixture(scope="module")
def _shared_stacks() -> Iterator[dict[tuple[object, ...], Stack]]:
    """The stacks the tests of one module share, stopped when the module is done."""
    running: dict[tuple[object, ...], Stack] = {}
    yield running
    for stack in running.values():
        stack.stop()


@pytest.fixture
def make_stack(valkey: str, tmp_path_factory: pytest.TempPathFactory,
               _shared_stacks: dict[tuple[object, ...], Stack],
               request: pytest.FixtureRequest) -> Iterator[MakeStack]:
    """``make_stack(**env)``: our highlighter (or ``highlighter_url``), a worker and the web
    app with a temporary SQLite file (a new PostgreSQL database when the test uses the
    ``backend`` fixture's ``postgres``) and a Valkey database of their own (or
    ``redis_url``), with ``env`` on top of the defaults. The stack is stopped after the test; with
    ``shared=True`` it is the one stack of this module with those settings, started on first
    use and stopped after the module. A failing test shows the logs of every stack it used.
    """
    used = request.node.stash.setdefault(STACKS, [])
    own: list[Stack] = []
    backend = request.getfixturevalue("backend") if "backend" in request.fixturenames \
        else "sqlite"

    def make(*, highlighter_url: str | None = None, redis_url: str | None = None,
             shared: bool = False, **env: str) -> Stack:
        key = (highlighter_url, redis_url, backend, tuple(sorted(env.items())))
        if shared and key in _shared_stacks:
            stack = _shared_stacks[key]
        else:
            stack = Stack(redis_url or fresh_redis_url(valkey),
                          tmp_path_factory.mktemp("stack"), highlighter_url,
                          _database_url(request), **env)
            if shared:
                _shared_stacks[key] = stack
            else:
                own.append(stack)
        used.append(stack)
        return stack

    yield make
    for stack in own:
        stack.stop()


@pytest.fixture
def stack(make_stack: MakeStack) -> Stack:
    """The default stack, shared by the tests of a module."""
    return make_stack(shared=True)


def run_upstream(module: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run ``python -m tests.MODULE PORT`` (a stand-in highlighter); yield its URL."""
    process, port = python_server(module, ["-m", f"tests.{module}"], base_env(),
                                  tmp_path_factory.mktemp(module))
    yield f"http://127.0.0.1:{port}/"
    process.stop()


@pytest.fixture(scope="session")
def fake_highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/fake_highlighter.py: refuses one language, answers hostile HTML on request."""
    yield from run_upstream("fake_highlighter", tmp_path_factory)


@pytest.fixture(scope="session")
def flaky_highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """tests/flaky_highlighter.py: an upstream that fails on purpose and logs request times."""
    yield from run_upstream("flaky_highlighter", tmp_path_factory)


@pytest.fixture
def fake_stack(make_stack: MakeStack, fake_highlighter: str) -> Stack:
    """The worker and web app talking to the fake highlighter, shared by a module's tests."""
    return make_stack(shared=True, highlighter_url=fake_highlighter)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def queued_jobs(redis_url: str) -> int:
    """Snippet jobs waiting in the queue plus their payloads stored in Redis (the worker's
    own periodic jobs, ``cron:…``, come and go by themselves and are left out)."""
    client = redis.Redis.from_url(redis_url)
    try:
        jobs: list[bytes] = client.zrange("snippets:queue", 0, -1)  # type: ignore[assignment]
        keys: list[bytes] = client.keys("arq:job:*")  # type: ignore[assignment]
        queued = [job for job in jobs if not job.startswith(b"cron:")]
        stored = [key for key in keys if not key.startswith(b"arq:job:cron:")]
        return len(queued) + len(stored)
    finally:
        client.close()


def require_chromium() -> None:
    """Skip without Debian's chromium, with the reason; under CI=true, fail instead."""
    if Path(CHROMIUM).exists():
        return
    reason = f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium)"
    if in_ci():
        pytest.fail(f"CI=true: the browser tests must run, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[OwnValkey]:
    """A Valkey of this test's own, which it may kill, restart or stop."""
    server = OwnValkey(tmp_path / "valkey")
    yield server
    server.kill()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium under Playwright (see ``require_chromium``)."""
    require_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                    args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> Page:
    """A fresh page of the browser, as wide as a laptop's screen."""
    return await browser.new_page(viewport={"width": 1280, "height": 900})


__all__ = ["Process", "Stack", "row_count", "queued_jobs"]


# Failing tests show their stacks' logs.

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed and call.when in ("setup", "call"):
        used = item.stash[STACKS] if STACKS in item.stash else []
        for n, stack in enumerate(dict.fromkeys(used), 1):
            report.sections.append((f"stack {n} logs ({stack.url})", stack.logs()))


# Distribution over pytest-xdist workers.

# (the markers spread and serial are declared in setup.cfg)

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """With ``--dist loadgroup``, keep a module's tests on one worker (they share its
    stacks) unless the module is marked ``spread`` or the test names its own group."""
    for item in items:
        if item.get_closest_marker("xdist_group") or item.get_closest_marker("spread"):
            continue
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    """Under xdist, a ``serial`` test holds a lock that every other test shares."""
    basetemp = getattr(item.config.option, "basetemp", None)
    if not os.environ.get("PYTEST_XDIST_WORKER") or not basetemp:
        yield
        return
    exclusive = item.get_closest_marker("serial") is not None
    with open(Path(basetemp).parent / "serial.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
