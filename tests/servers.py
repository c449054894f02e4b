"""Real processes for the tests: Valkey, the highlighter, the worker and the web app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from snippet_service.valkey import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


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


def base_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in (
        "REDIS_URL", "HIGHLIGHTER_URL", "PORT", "HIGHLIGHTER_PORT", "SNIPPETS_DB")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


class Stack:
    """The highlighter (ours unless a URL is given), a worker and the web app on free ports.

    The suite creates hundreds of snippets a minute from 127.0.0.1, so the creation rate
    limits (snippets and bytes a minute, bytes a day) are off unless a test passes its own.
    """

    def __init__(self, redis_url: str, work_dir: Path, highlighter_url: str | None = None,
                 **extra_env: str) -> None:
        self.work_dir = work_dir
        self.db_path = work_dir / "snippets.db"
        self.redis_url = redis_url
        self.processes: list[Process] = []
        self.port = free_port()
        env = base_env(REDIS_URL=redis_url, SNIPPETS_DB=str(self.db_path), PORT=str(self.port),
                       **{"RATE_LIMIT_PER_MINUTE": "0", "RATE_LIMIT_BYTES_PER_MINUTE": "0",
                          "DAILY_BYTES_PER_CLIENT": "0", **extra_env})
        if highlighter_url is None:
            highlighter_port = free_port()
            env["HIGHLIGHTER_PORT"] = str(highlighter_port)
            self.highlighter = python("highlighter", ["-m", "snippet_service.highlighter"],
                                      env, work_dir)
            self.processes.append(self.highlighter)
            wait_for_port(highlighter_port, 30, self.highlighter.popen)
            highlighter_url = f"http://127.0.0.1:{highlighter_port}/"
        self.highlighter_url = highlighter_url
        env["HIGHLIGHTER_URL"] = highlighter_url
        self.env = env
        self.web = python("web", ["run_web.py"], env, work_dir)
        self.processes.append(self.web)
        wait_for_port(self.port, 30, self.web.popen)
        self.worker: Process | None = None
        self.start_worker()
        self.url = f"http://127.0.0.1:{self.port}"

    def start_worker(self) -> Process:
        self.worker = python("worker", ["run_worker.py"], self.env, self.work_dir)
        self.processes.append(self.worker)
        deadline = time.monotonic() + 20
        while "Starting worker" not in self.worker.log():
            if self.worker.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("worker did not start:\n" + self.worker.log())
            time.sleep(0.05)
        return self.worker

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log()[-4000:]}" for p in self.processes)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
