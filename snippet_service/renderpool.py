"""A pool of render processes where every render has a deadline.

Each process takes one render at a time over its own pipe. A render that passes its
deadline, or whose caller goes away, has its process killed (SIGKILL) and replaced, so an
abandoned render never keeps a CPU busy. At most ``max_waiting`` calls wait for a free
process; the next one is refused at once with ``PoolBusy``.

Besides its main render, a pool may know other renders by name (``variants``): a call
naming one sends the name ahead of the language, so the main render's messages stay as
they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess

logger = logging.getLogger("snippet_service.renderpool")

Render = Callable[[str, str], str]

OK, FAILED = b"o", b"e"
VARIANT = b"\0"  # starts the header of a call to a named variant: NUL name NUL language
PR_SET_PDEATHSIG = 1
REAP_SECONDS = 5.0


class PoolBusy(Exception):
    """Every process is busy and the waiting line is full."""


class RenderTimeout(Exception):
    """The render ran past its deadline; its process was killed."""


class RenderFailed(Exception):
    """The render raised; ``kind`` is the exception's class name."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _header(lang: str, variant: str | None) -> bytes:
    """The first message of a call: the language, after the variant's name if any."""
    if variant is None:
        return lang.encode()
    return VARIANT + variant.encode() + VARIANT + lang.encode()


def _serve(conn: Connection, render: Render, variants: Mapping[str, Render]) -> None:
    """A render process: one render per request on ``conn`` until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the pool stops us, not the terminal
    with contextlib.suppress(OSError, AttributeError):  # die with the forkserver
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    while True:
        try:
            lang = conn.recv_bytes().decode()
            code = conn.recv_bytes().decode("utf-8", "surrogatepass")
        except (EOFError, OSError):
            return
        chosen = render
        try:
            if lang.startswith("\0"):
                _, name, lang = lang.split("\0", 2)
                chosen = variants[name]
            answer = OK + chosen(lang, code).encode("utf-8", "surrogatepass")
        except Exception as exc:  # the parent decides what a failure means
            answer = FAILED + f"{type(exc).__name__}\n{exc}".encode("utf-8", "replace")
        try:
            conn.send_bytes(answer)
        except (EOFError, OSError):
            return


def _start_forkserver() -> None:
    """Start multiprocessing's forkserver with SIGINT ignored, which it and every render
    process forked from it inherit: the terminal's Ctrl-C (sent to the whole process
    group) never reaches them, not even while they import or before ``_serve`` runs, so
    they print no KeyboardInterrupt; the pool stops them. Done in the main thread, the
    only one that may change signal handlers, with the handler put back at once."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        forkserver.ensure_running()
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, previous)


class _Process:
    """One render process and the parent's end of its pipe."""

    def __init__(self, context: ForkServerContext, render: Render,
                 variants: Mapping[str, Render]) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self.process: BaseProcess = context.Process(
            target=_serve, args=(child, render, variants), name="render", daemon=True
        )
        self.process.start()
        child.close()
        self.pending: Future[bytes | None] | None = None

    def exchange(self, lang: str, code: str, seconds: float,
                 variant: str | None = None) -> bytes | None:
        """Send one render and wait for its answer (in a thread); None past the deadline."""
        self.conn.send_bytes(_header(lang, variant))
        self.conn.send_bytes(code.encode("utf-8", "surrogatepass"))
        if not self.conn.poll(seconds):
            return None
        return self.conn.recv_bytes()

    def kill(self) -> None:
        """SIGKILL the process; ``reap`` closes the pipe once nothing waits on it."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def reap(self) -> None:
        """After ``kill`` (in a thread): the waiting exchange sees the pipe end, then the
        pipe is closed (never under a thread still using its descriptor) and the process
        reaped."""
        if self.pending is not None:
            wait_futures([self.pending], timeout=REAP_SECONDS)
        self.conn.close()
        self.process.join(REAP_SECONDS)


class RenderPool:
    """``processes`` render processes; every render ends within ``seconds``. ``render``
    is the main render, ``variants`` others a call may name (module-level functions, as
    the processes are handed them by name)."""

    def __init__(self, render: Render, processes: int, seconds: float, max_waiting: int,
                 preload: tuple[str, ...] = (),
                 variants: Mapping[str, Render] | None = None) -> None:
        self._render = render
        self._variants = dict(variants or {})
        self._size = processes
        self.seconds = seconds
        self._max_waiting = max_waiting
        self._context = multiprocessing.get_context("forkserver")
        if preload:  # new processes start from a forkserver that has imported these
            self._context.set_forkserver_preload(list(preload))
        # One thread per process waits on its pipe, plus room for the threads of killed
        # processes that are still noticing the end of their pipe.
        self._threads = ThreadPoolExecutor(max_workers=2 * processes + 1,
                                           thread_name_prefix="render")
        self._all: set[_Process] = set()
        self._idle: list[_Process] = []
        self._waiters: deque[asyncio.Future[_Process]] = deque()
        self._background: set[asyncio.Task[None]] = set()
        self.killed = 0

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    async def start(self) -> None:
        """Start the processes and render one small snippet in each."""
        _start_forkserver()
        loop = asyncio.get_running_loop()
        started = await asyncio.gather(*(
            loop.run_in_executor(self._threads, _Process, self._context, self._render,
                                 self._variants)
            for _ in range(self._size)))
        self._all.update(started)
        self._idle.extend(started)
        for process in started:
            answer = await loop.run_in_executor(self._threads, process.exchange, "python",
                                                "pass", 60.0)
            if answer is None or not answer.startswith(OK):
                raise RuntimeError("a render process did not start")

    async def close(self) -> None:
        """Kill every process; renders still running are cut short."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for waiter in self._waiters:
            waiter.cancel()
        processes, self._all, self._idle = self._all, set(), []
        for process in processes:
            process.kill()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._threads, p.reap) for p in processes))
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def render(self, lang: str, code: str, variant: str | None = None) -> str:
        """Render in a free process (with the main render, or the variant of that name):
        its text, or RenderTimeout, RenderFailed, PoolBusy."""
        if variant is not None and variant not in self._variants:
            raise ValueError(f"no render variant {variant!r}")
        process = await self._acquire()
        try:
            process.pending = self._threads.submit(process.exchange, lang, code, self.seconds,
                                                   variant)
            answer = await asyncio.wrap_future(process.pending)
        except BaseException:  # cancelled (the client went away) or the pipe broke
            self._replace(process)
            raise
        if answer is None:
            self._replace(process)
            raise RenderTimeout(f"the render took over {self.seconds:g}s")
        self._release(process)
        if answer.startswith(OK):
            return answer[1:].decode("utf-8", "surrogatepass")
        kind, _, message = answer[1:].decode("utf-8", "replace").partition("\n")
        raise RenderFailed(kind, message)

    async def _acquire(self) -> _Process:
        if self._idle and not self.waiting:
            return self._idle.pop()
        if self.waiting >= self._max_waiting:
            raise PoolBusy(f"{self._size} renders running and {self.waiting} waiting")
        waiter: asyncio.Future[_Process] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # handed over just as we were cancelled
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _release(self, process: _Process) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(process)
                return
        self._idle.append(process)

    def _replace(self, process: _Process) -> None:
        """Kill a process whose render is not wanted any more and start another."""
        process.kill()
        self._all.discard(process)
        self.killed += 1
        task = asyncio.get_running_loop().create_task(self._respawn(process))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _respawn(self, killed: _Process) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, killed.reap)
        while True:
            try:
                process = await loop.run_in_executor(
                    self._threads, _Process, self._context, self._render, self._variants)
            except OSError:
                logger.exception("could not start a render process; trying again")
                await asyncio.sleep(1.0)
                continue
            self._all.add(process)
            self._release(process)
            return
