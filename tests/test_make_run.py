"""`make run` starts the whole service on embedded defaults, and Ctrl-C or SIGTERM stops
every process it started within 5 s, with no traceback, whatever is going on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import aiohttp
import psutil
import pytest
import redis

from snippet_service.valkey import free_port
from tests.helpers import create_via_form, until, wait_for_snippet
from tests.servers import ROOT, base_env, start_private_valkey

STOP_SECONDS = 5.0


class MakeRun:
    """``make run`` in its own process group, its output in a file."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "make-run.log"
        self.var = tmp_path / "var"
        environment = base_env(PORT=str(self.port), HIGHLIGHTER_PORT=str(free_port()),
                               SNIPPETS_DB=str(self.var / "snippets.db"), **env)
        with self.log.open("wb") as out:
            self.make = subprocess.Popen(["make", "run"], cwd=ROOT, env=environment,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def started(self) -> list[psutil.Process]:
        """Wait for the "running at" line; every process make started."""
        line = f"running at {self.url}/"
        await until(lambda: line in self.output() or self.make.poll() is not None, 180,
                    lambda: f"no {line!r} in the output:\n{self.output()}")
        assert self.make.poll() is None, self.output()
        return psutil.Process(self.make.pid).children(recursive=True)

    def kill(self) -> None:
        if self.make.poll() is None:
            os.killpg(self.make.pid, signal.SIGKILL)
            self.make.wait()


async def slow_request(url: str) -> asyncio.StreamWriter:
    """A request whose body is still on its way (a slow client): headers and a first part."""
    host, port = url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/snippets HTTP/1.1\r\nHost: " + host.encode()
                 + b"\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
                 + b'{"language": "python", "code": "')
    await writer.drain()
    return writer


@pytest.mark.serial
@pytest.mark.timeout(300)
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm-to-make"])
@pytest.mark.parametrize("situation", ["event-stream", "slow-request", "valkey-gone"])
async def test_make_run_serves_and_stops_everything(
        tmp_path: Path, http: aiohttp.ClientSession, stop: str, situation: str) -> None:
    env: dict[str, str] = {}
    valkey: subprocess.Popen[bytes] | None = None
    if situation == "valkey-gone":  # a Valkey of our own that can go away under the service
        valkey, valkey_port = start_private_valkey(tmp_path / "valkey")
        env["REDIS_URL"] = f"redis://127.0.0.1:{valkey_port}/0"
    else:
        valkey_port = free_port()
        env["VALKEY_PORT"] = str(valkey_port)
    run = MakeRun(tmp_path, **env)
    held: list[aiohttp.ClientResponse | asyncio.StreamWriter] = []
    try:
        started = await run.started()
        names = " ".join(" ".join(p.cmdline()) for p in started)
        for expected in ("snippet_service.highlighter", "tasks.runner",
                         "snippet_service.web.server"):
            assert expected in names
        snippet_id = await create_via_form(http, run.url, "python", "print('made')\n")
        body = await wait_for_snippet(http, run.url, snippet_id, timeout=10)
        assert body["status"] == "highlighted"
        assert '<span class="nb">print</span>' in body["highlighted_code"]

        if situation == "valkey-gone":
            assert valkey is not None
            valkey.kill()
            valkey.wait()
            await until(lambda: "lost" in run.output(), 10,
                        lambda: f"nobody noticed Valkey going:\n{run.output()}")
        else:
            assert "valkey-server" in names
            # The private Valkey wants the password kept under var/, which no command line
            # shows.
            password = (run.var / "valkey" / "password").read_text().strip()
            assert password and password not in names
            anonymous = redis.Redis(port=valkey_port)
            with pytest.raises(redis.AuthenticationError):
                anonymous.ping()
            anonymous.close()
            with redis.Redis(port=valkey_port, password=password) as client:
                assert client.ping()
        if situation == "slow-request":
            held.append(await slow_request(run.url))
        # An event stream held open, as a page waiting on a snippet keeps one.
        held.append(await http.get(f"{run.url}/snippets/{snippet_id}/events"))

        stopped_at = time.monotonic()
        if stop == "ctrl-c":
            os.killpg(run.make.pid, signal.SIGINT)  # as a terminal sends it, to every process
        else:
            run.make.send_signal(signal.SIGTERM)
        _, alive = await asyncio.to_thread(psutil.wait_procs, started, 30)
        await asyncio.to_thread(run.make.wait, 30)
        took = time.monotonic() - stopped_at
        output = run.output()
        assert alive == [], f"left running: {alive}\n{output}"
        assert took < STOP_SECONDS, f"took {took:.1f} s\n{output}"
        assert "Traceback" not in output and "did not stop in time" not in output, output
    finally:
        for item in held:
            item.close()
        run.kill()
        if valkey is not None and valkey.poll() is None:
            valkey.kill()
            valkey.wait()
