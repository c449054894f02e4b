"""`make run` starts the whole service on embedded defaults and stops all of it."""

from __future__ import annotations

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
from tests.helpers import create_via_form, wait_for_snippet
from tests.servers import ROOT, base_env


def wait_for_line(log: Path, text: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} in the output:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm-to-make"])
async def test_make_run_serves_highlights_and_stops_everything(
        tmp_path: Path, http: aiohttp.ClientSession, stop: str) -> None:
    port, highlighter_port, valkey_port = free_port(), free_port(), free_port()
    log = tmp_path / "make-run.log"
    env = base_env(PORT=str(port), HIGHLIGHTER_PORT=str(highlighter_port),
                   VALKEY_PORT=str(valkey_port), SNIPPETS_DB=str(tmp_path / "var" / "snippets.db"))
    with log.open("wb") as out:
        make = subprocess.Popen(["make", "run"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        wait_for_line(log, f"running at http://127.0.0.1:{port}/", make, 120)
        started = psutil.Process(make.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in started)
        for expected in ("valkey-server", "snippet_service.highlighter", "run_worker.py",
                         "run_web.py"):
            assert expected in names

        base_url = f"http://127.0.0.1:{port}"
        snippet_id = await create_via_form(http, base_url, "python", "print('made')\n")
        body = await wait_for_snippet(http, base_url, snippet_id, timeout=10)
        assert body["status"] == "highlighted"
        assert '<span class="nb">print</span>' in body["highlighted_code"]
        assert (tmp_path / "var" / "valkey").is_dir()
        # The private Valkey wants the password kept under var/, which no command line shows.
        password = (tmp_path / "var" / "valkey" / "password").read_text().strip()
        assert password and password not in names
        anonymous = redis.Redis(port=valkey_port)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        anonymous.close()
        with redis.Redis(port=valkey_port, password=password) as client:
            assert client.ping()

        # An event stream held open, as a page waiting on a snippet keeps one.
        stream = await http.get(f"{base_url}/snippets/{snippet_id}/events")
        stopped_at = time.monotonic()
        if stop == "ctrl-c":
            os.killpg(make.pid, signal.SIGINT)  # as a terminal sends it, to every process
        else:
            make.send_signal(signal.SIGTERM)
        make.wait(60)
        _, alive = psutil.wait_procs(started, timeout=40)
        assert alive == [], f"left running: {alive}\n{log.read_text()}"
        output = log.read_text(errors="replace")
        assert time.monotonic() - stopped_at < 5, output  # every process, within 5 s
        assert "Traceback" not in output and "did not stop in time" not in output, output
        stream.close()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
