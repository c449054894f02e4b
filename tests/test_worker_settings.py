"""One worker definition under both entry points (``run_worker.py``, which is ``python -m
tasks.runner``, and arq's own ``arq tasks.worker.WorkerSettings``); its clean stop on
SIGINT and SIGTERM, with Redis up, gone or hanging and with a job running; and its
configuration errors."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest

from snippet_service import workers
from snippet_service.config import Config
from snippet_service.queue import open_pool
from tests.conftest import MakeStack
from tests.helpers import create_via_api, until, wait_for_snippet, wait_until
from tests.servers import ROOT, OwnValkey, Process, Stack, base_env

pytestmark = pytest.mark.spread  # each test starts a stack of its own

ARQ = str(Path(sys.executable).parent / "arq")
RUN_WORKER = [sys.executable, "run_worker.py"]
ARQ_WORKER = [ARQ, "tasks.worker.WorkerSettings"]
STOP_WITHIN = 5.0


def start_worker(stack: Stack, name: str, command: list[str], **env: str) -> Process:
    """Another worker for the stack, started with ``command``; once it has started."""
    worker = Process(name, command, {**stack.env, **env}, stack.work_dir)
    stack.processes.append(worker)

    def started() -> bool:
        assert worker.popen.poll() is None, f"{name} exited:\n{worker.log()}"
        return "Starting worker" in worker.log()

    wait_until(started, 20, lambda: f"{name} did not start:\n{worker.log()}")
    return worker


def stop_in_time(worker: Process, sig: signal.Signals) -> str:
    """Signal the worker; it must exit 0 within STOP_WITHIN s, with no traceback. Its log."""
    started = time.monotonic()
    worker.popen.send_signal(sig)
    exit_code = worker.popen.wait(30)
    took = time.monotonic() - started
    log = worker.log()
    assert took < STOP_WITHIN, f"{sig.name}: exited after {took:.1f}s\n{log}"
    assert exit_code == 0, log
    assert "Traceback" not in log and "Event loop is closed" not in log, log
    return log


async def upstream_calls(http: aiohttp.ClientSession, upstream: str, code: str) -> int:
    async with http.get(upstream + "log", params={"code": code}) as response:
        return len(await response.json())


@pytest.mark.parametrize(("state", "sig"), [
    ("redis-up", signal.SIGTERM),
    ("redis-gone", signal.SIGINT),
    ("redis-hanging", signal.SIGTERM),
    ("job-running", signal.SIGINT),
])
async def test_a_signal_stops_the_worker_at_once_and_cleanly(
        make_stack: MakeStack, own_valkey: OwnValkey, flaky_highlighter: str,
        http: aiohttp.ClientSession, state: str, sig: signal.Signals) -> None:
    """No traceback, exit 0, within 5 s; a running job first finishes within the grace."""
    stack = make_stack(redis_url=own_valkey.url, highlighter_url=flaky_highlighter,
                       WORKER_SHUTDOWN_GRACE="10")
    worker = stack.worker
    assert worker is not None
    if state == "redis-gone":
        own_valkey.kill()
        wait_until(lambda: "Redis connection lost" in worker.log(), 10,
                   lambda: "the worker never noticed:\n" + worker.log())
    elif state == "redis-hanging":
        own_valkey.hang()
    elif state == "job-running":
        code = f"sleep=1.5 # {uuid.uuid4().hex}"
        created = await create_via_api(http, stack.url, "slow", code)
        await until(lambda: upstream_calls(http, flaky_highlighter, code), 10,
                    "the highlighter was never called")
    log = stop_in_time(worker, sig)
    assert f"{sig.name}: stopping" in log
    if state == "job-running":  # finished within the grace, not cut off
        body = await wait_for_snippet(http, stack.url, created["id"], 0)
        assert body["status"] == "highlighted"
        assert await upstream_calls(http, flaky_highlighter, code) == 1


async def test_arq_cli_runs_the_same_worker(make_stack: MakeStack,
                                            http: aiohttp.ClientSession) -> None:
    """``arq tasks.worker.WorkerSettings``: the same functions and cron job, resources,
    heartbeat and reconciler, and a clean stop."""
    stack = make_stack()
    assert stack.worker is not None
    ours = stack.worker.log()
    assert stack.worker.stop() == 0
    worker = start_worker(stack, "arq-worker", ARQ_WORKER)
    functions = ("Starting worker for 4 functions: highlight_snippet, expire_snippet,"
                 " ansi_snippet, cron:reconcile")
    assert functions in ours and functions in worker.log()

    created = await create_via_api(http, stack.url, "python", "print('arq')")
    body = await wait_for_snippet(http, stack.url, created["id"])
    assert body["status"] == "highlighted", stack.logs()
    assert '<span class="nb">print</span>' in body["highlighted_code"]

    redis = await open_pool(Config(redis_url=stack.redis_url))
    try:
        async def registered() -> list[workers.WorkerInfo]:
            return [info for info in await workers.live_workers(redis)
                    if info.pid == worker.pid]

        beating: list[workers.WorkerInfo] = await until(registered, 10,
                                                        "the arq worker never beat")
        [info] = beating
        assert info.max_jobs == Config().worker_max_jobs
        stop_in_time(worker, signal.SIGTERM)
        assert await registered() == []  # it left the registry as it stopped
    finally:
        await redis.aclose(close_connection_pool=True)


async def test_processes_run_side_by_side_and_stop_together(
        make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    stack = make_stack()
    assert stack.worker is not None and stack.worker.stop() == 0
    parent = start_worker(stack, "workers", RUN_WORKER, WORKER_PROCESSES="2")
    wait_until(lambda: parent.log().count("Starting worker") == 2, 20,
               lambda: "the second process did not start:\n" + parent.log())
    children = psutil.Process(parent.pid).children()
    assert [child.cmdline()[1:] for child in children] == [
        ["-m", "tasks.runner", "--processes", "1"]] * 2
    created = await create_via_api(http, stack.url, "python", "both = True")
    assert (await wait_for_snippet(http, stack.url, created["id"]))["status"] == "highlighted"
    stop_in_time(parent, signal.SIGTERM)
    assert psutil.wait_procs(children, timeout=1)[1] == []


@pytest.mark.parametrize("command", [RUN_WORKER, [sys.executable, "-m", "tasks.runner"],
                                     ARQ_WORKER], ids=["run_worker.py", "-m tasks.runner", "arq"])
def test_a_bad_setting_stops_the_worker_naming_it(command: list[str], tmp_path: Path) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env=base_env(WORKER_MAX_JOBS="abc",
                                         SNIPPETS_DB=str(tmp_path / "snippets.db")))
    assert result.returncode != 0
    assert "configuration error: WORKER_MAX_JOBS" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
