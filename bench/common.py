"""What every benchmark shares: a private Valkey, child processes, RSS sampling and tables."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import psutil
import redis
import uvloop

from snippet_service.config import Config
from snippet_service.valkey import free_port, start_valkey, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
CPU_COUNT = os.cpu_count() or 1
# For the web app: the rate limiter still counts every creation (and its bytes) in Redis,
# but never refuses; and the one load generator may hold as many event streams as the
# process allows everyone (at 200 snippets/s a stall of 0.1 s already holds 20, the
# per-client cap, which answered some of its streams 429).
NO_RATE_LIMITS = {"RATE_LIMIT_PER_MINUTE": str(10**9),
                  "RATE_LIMIT_BYTES_PER_MINUTE": str(10**15),
                  "DAILY_BYTES_PER_CLIENT": str(10**15),
                  "EVENT_STREAMS_PER_CLIENT": "1000"}
T = TypeVar("T")
PR_SET_PDEATHSIG = 1


class _Recorder(dict[str, str]):
    """An empty environment that remembers which names were looked up."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.names.add(key)
        return default


def app_variables() -> frozenset[str]:
    """Every environment variable Config.from_env reads."""
    recorder = _Recorder()
    Config.from_env(recorder)
    return frozenset(recorder.names)


def die_with_parent() -> None:
    """In a child, before exec: ask Linux to SIGTERM it if this process dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def setup(name: str) -> None:
    """Progress goes to stderr (tables to stdout); SIGTERM unwinds like Ctrl-C."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s [{name}] %(message)s", datefmt="%H:%M:%S")

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, _stop)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a fresh uvloop event loop."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


@contextlib.contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as path:
        yield Path(path)


@contextlib.contextmanager
def private_valkey(directory: Path) -> Iterator[str]:
    """A non-persistent Valkey on a free loopback port; yields redis://127.0.0.1:PORT/0."""
    port = free_port()
    process = start_valkey(port, directory / "valkey", persistent=False,
                           preexec_fn=die_with_parent)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def app_env(**values: str) -> dict[str, str]:
    """This environment without our app's variables (defaults apply), plus the given ones."""
    ignored = app_variables()
    env = {key: value for key, value in os.environ.items() if key not in ignored}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(values)
    return env


class Child:
    """A child process (Python unless ``program`` says otherwise) run from the project root,
    logging to a file."""

    def __init__(self, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path,
                 program: str = sys.executable) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [program, *args], cwd=ROOT, env=dict(env), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_port(self, port: int, timeout: float = 30.0) -> None:
        try:
            wait_for_port(port, timeout, self.popen)
        except RuntimeError:
            raise RuntimeError(f"{self.name} did not start:\n{self.log()[-3000:]}") from None

    def wait_for_log(self, text: str, timeout: float = 30.0, count: int = 1) -> None:
        """Wait until the log holds ``text`` ``count`` times."""
        deadline = time.monotonic() + timeout
        while self.log().count(text) < count:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {text!r}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait, SIGKILL if need be."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()
        return self.popen.returncode


def tree_rss(process: psutil.Process) -> int:
    """Resident memory of a process and all its descendants, in bytes."""
    total = 0
    with contextlib.suppress(psutil.Error):
        total += process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


class RssSampler:
    """Samples a process tree's RSS every ``interval`` seconds in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.process))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process and its live children have used so far."""
    parent = psutil.Process(pid)
    total = 0.0
    for process in (parent, *parent.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile (pct in 0..100); nan when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def mb(size: float) -> float:
    return size / (1024 * 1024)


@dataclass
class Table:
    """A titled table of rows printed with aligned columns, then its notes."""

    title: str
    headers: list[str]
    rows: list[list[object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(list(cells))

    def render(self) -> str:
        cells = [self.headers] + [[_cell(value) for value in row] for row in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]
        lines = [f"== {self.title} ==  (machine: {CPU_COUNT} CPUs, os.cpu_count())"]
        for number, row in enumerate(cells):
            lines.append("  ".join(
                text.ljust(width) if i == 0 else text.rjust(width)
                for i, (text, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip())
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.extend(self.notes)
        return "\n".join(lines)

    def print(self) -> None:
        print("\n" + self.render(), flush=True)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def target_line(name: str, met: bool | None, detail: str) -> str:
    """A line run_all collects into its summary; ``met=None`` when it could not be judged
    (its reference is missing: the detail says why)."""
    verdict = "SKIPPED" if met is None else "MET    " if met else "NOT MET"
    return f"target {verdict} {name}: {detail}"


def ratio(value: float, reference: float) -> float:
    """value / reference, nan when either is missing or the reference is 0."""
    if not reference or math.isnan(reference) or math.isnan(value):
        return math.nan
    return value / reference


def times(value: float) -> str:
    """A ratio as ``0.42x`` (``-`` when missing)."""
    return "-" if math.isnan(value) else f"{value:.2f}x"


def flush_valkey(redis_url: str) -> None:
    """Empty the database at redis_url (a private Valkey between two runs)."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.flushdb()
    finally:
        client.close()

