"""The highlighter's CPU and answer limits, with the real stack: every render has a time
limit enforced by killing its process, waiting renders are bounded (503 past that), a
render past the limit fails its snippet at once, a client that hangs up frees its render
process, and the largest dense input fits the worker's answer cap."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import psutil
import pytest

from snippet_service.config import Config
from snippet_service.highlighter import TOO_SLOW
from tasks.client import MIN_RESPONSE_BYTES, max_response_bytes
from tests.conftest import MakeStack
from tests.helpers import create_via_api, until, wait_for_snippet
from tests.servers import Process, Stack, base_env, python_server
from tests.test_retries import dead_entry

RENDER_SECONDS = 3.0
QUEUE = 2
PROCESSES = os.cpu_count() or 1  # what the highlighter starts on this machine
# C#'s lexer backtracks on runs of short lines: 4 KiB take about 1.5 s, and the time grows
# with the square of the size, so 32 KiB take minutes.
PATHOLOGICAL = ("csharp", "a\n" * 16384)
SMALL = ("python", "print('small')\n")

# Timed renders that keep every CPU busy: no other test runs beside them.
pytestmark = pytest.mark.serial


@pytest.fixture
def render_stack(make_stack: MakeStack) -> Stack:
    return make_stack(shared=True, HIGHLIGHT_RENDER_SECONDS=str(RENDER_SECONDS),
                      HIGHLIGHTER_QUEUE=str(QUEUE), HIGHLIGHT_RETRIES="3",
                      RETRY_DELAY_SCALE="0.01")


@dataclass
class Highlighter:
    process: Process
    url: str


@pytest.fixture(scope="module")
def patient_highlighter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Highlighter]:
    """Our highlighter alone with a long render limit, started with HOST=0.0.0.0."""
    env = base_env(HOST="0.0.0.0", HIGHLIGHT_RENDER_SECONDS="120")
    env.pop("HIGHLIGHTER_HOST", None)
    process, port = python_server("highlighter", ["-m", "snippet_service.highlighter"], env,
                                  tmp_path_factory.mktemp("patient"), "HIGHLIGHTER_PORT")
    yield Highlighter(process, f"http://127.0.0.1:{port}/")
    process.stop()


def render_cpu_seconds(highlighter_pid: int) -> float:
    """CPU time (user + system) of the highlighter's render processes, alive right now."""
    total = 0.0
    for child in psutil.Process(highlighter_pid).children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def renders_go_idle(highlighter_pid: int, within: float = 5.0) -> None:
    """Wait until the render processes use (almost) no CPU (under 0.1 s) over half a
    second: no render is left running."""

    async def idle() -> bool:
        before = render_cpu_seconds(highlighter_pid)
        await asyncio.sleep(0.5)  # the window CPU time is measured over, not a wait
        return render_cpu_seconds(highlighter_pid) - before < 0.1

    await until(idle, within, "the render processes kept using the CPU", interval=0)


async def post_render(http: aiohttp.ClientSession, url: str, lang: str, code: str,
                      timeout: float = 60.0) -> tuple[int, str, float, dict[str, str]]:
    started = time.monotonic()
    async with http.post(url, data={"lang": lang, "code": code},
                         timeout=aiohttp.ClientTimeout(total=timeout)) as response:
        text = await response.text()
        return (response.status, text, time.monotonic() - started,
                dict(response.headers))


async def test_a_pathological_snippet_fails_in_time_while_a_small_one_is_highlighted_promptly(
        render_stack: Stack, http: aiohttp.ClientSession) -> None:
    started = time.monotonic()
    slow, small = await asyncio.gather(create_via_api(http, render_stack.url, *PATHOLOGICAL),
                                       create_via_api(http, render_stack.url, *SMALL))
    small_body = await wait_for_snippet(http, render_stack.url, small["id"])
    small_seconds = time.monotonic() - started
    slow_body = await wait_for_snippet(http, render_stack.url, slow["id"], timeout=30)
    slow_seconds = time.monotonic() - started

    assert small_body["status"] == "highlighted", render_stack.logs()
    assert small_seconds < RENDER_SECONDS - 1, small_seconds  # it did not wait for the slow one
    assert slow_body["status"] == "failed", render_stack.logs()
    assert slow_body["error"].startswith(TOO_SLOW)
    assert slow_seconds < RENDER_SECONDS + 3, slow_seconds
    entry = dead_entry(render_stack, slow["id"])  # permanent: no retry was used
    assert entry is not None and entry["tries"] == 1, entry
    assert entry["error"] == f"{TOO_SLOW} (over {RENDER_SECONDS:g} s)"
    await renders_go_idle(render_stack.highlighter.pid)  # the render was stopped


async def test_a_render_past_the_limit_is_422_and_its_process_is_replaced(
        render_stack: Stack, http: aiohttp.ClientSession) -> None:
    status, text, seconds, _ = await post_render(http, render_stack.highlighter_url,
                                                 *PATHOLOGICAL)
    assert status == 422 and text.startswith(TOO_SLOW), text
    assert RENDER_SECONDS <= seconds < RENDER_SECONDS + 2
    await renders_go_idle(render_stack.highlighter.pid)
    for _ in range(2 * PROCESSES):  # every process answers again
        status, text, seconds, _ = await post_render(http, render_stack.highlighter_url, *SMALL)
        assert status == 200 and '<span class="nb">print</span>' in text
        assert seconds < 2


async def test_renders_past_the_queue_are_503_with_retry_after(
        render_stack: Stack, http: aiohttp.ClientSession) -> None:
    extra = 2
    answers = await asyncio.gather(*(
        post_render(http, render_stack.highlighter_url, *PATHOLOGICAL)
        for _ in range(PROCESSES + QUEUE + extra)))
    statuses = sorted(status for status, _, _, _ in answers)
    assert statuses == [422] * (PROCESSES + QUEUE) + [503] * extra, answers
    for status, text, seconds, headers in answers:
        if status == 503:
            assert headers["Retry-After"] == str(int(RENDER_SECONDS))
            assert "busy" in text
            assert seconds < 1  # refused at once, not after waiting
    await renders_go_idle(render_stack.highlighter.pid)


async def test_a_client_that_hangs_up_frees_its_render_process(
        patient_highlighter: Highlighter, http: aiohttp.ClientSession) -> None:
    url = patient_highlighter.url
    abandoned = await asyncio.gather(*(
        post_render(http, url, *PATHOLOGICAL, timeout=0.5) for _ in range(PROCESSES)),
        return_exceptions=True)
    assert all(isinstance(result, TimeoutError) for result in abandoned), abandoned
    # Every process was busy with a render that would take minutes; they were stopped.
    status, text, seconds, _ = await post_render(http, url, *SMALL, timeout=10)
    assert status == 200 and '<span class="nb">print</span>' in text
    assert seconds < 3, seconds
    await renders_go_idle(patient_highlighter.process.pid)


def test_the_highlighter_listens_on_loopback_whatever_host_says(
        patient_highlighter: Highlighter) -> None:
    process = psutil.Process(patient_highlighter.process.pid)
    listening = [conn.laddr for conn in process.net_connections()
                 if conn.status == psutil.CONN_LISTEN]
    assert listening and all(address.ip == "127.0.0.1" for address in listening), listening


def test_the_answer_cap_follows_the_snippet_limit() -> None:
    assert max_response_bytes(512 * 1024) == 16 * 1024 * 1024
    assert max_response_bytes(1024) == MIN_RESPONSE_BYTES


async def test_dense_code_at_the_size_limit_is_highlighted(render_stack: Stack,
                                                           http: aiohttp.ClientSession) -> None:
    limit = Config().max_snippet_bytes  # the stack's MAX_SNIPPET_BYTES
    code = "[" + ",".join(["1"] * ((limit - 2) // 2)) + "]"
    assert limit - 2 <= len(code) <= limit
    created = await create_via_api(http, render_stack.url, "json", code)
    body = await wait_for_snippet(http, render_stack.url, created["id"], timeout=60)
    assert body["status"] == "highlighted", (body["error"], render_stack.logs())
    html = body["highlighted_code"]
    assert len(html.encode()) > 20 * len(code)  # over the old 4 MiB cap
    assert html.count('<span class="mi">1</span>') == (limit - 2) // 2
