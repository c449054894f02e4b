"""The worker process: ``python -m tasks.runner`` (also ``run_worker.py`` and the
``snippet-service-worker`` console script); ``--check`` reports the workers' health,
``--processes N`` runs N worker processes side by side.

It runs the one worker definition, :func:`tasks.worker.worker_settings`, under
:class:`tasks.hotpath.BatchWorker`, and adds the one thing arq's ``Worker`` cannot do:
stay up when Redis goes away (its ``main()`` ends with the connection error). Then
:class:`Runner` cancels the jobs that were running (they stay in Redis and run again),
closes what the worker opened, waits (0.5 s, doubling up to 5 s) and builds a new worker
from the same settings.

Stopping: SIGINT or SIGTERM stops claiming jobs; running jobs get WORKER_SHUTDOWN_GRACE
seconds (arq's ``job_completion_wait``), then are cancelled to run again elsewhere (a
running reconciler pass is not waited for: see ``BatchWorker._sleep_until_tasks_complete``);
the process exits 0. A signal during the reconnect wait ends it at once, and every Redis call
on the way out has at most a second or so, so that with no job running the worker is
gone within about 2 s even with Redis gone or hanging. Further signals change nothing:
a terminal's Ctrl-C reaches every process of the group and a launcher may pass it on as
well, and neither may cut the grace period short.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from arq.connections import ArqRedis

from snippet_service import workers
from snippet_service.config import Config, mask_url
from snippet_service.launcher import die_with_parent
from snippet_service.queue import RedisRefused, open_pool, refusal
from tasks.hotpath import BatchWorker
from tasks.worker import REDIS_ERRORS, process_config, worker_settings

logger = logging.getLogger("tasks.runner")

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
CLOSE_SECONDS = 1.0  # the most closing a worker waits on Redis (finishes, arq's health key)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
M_ARENA_MAX = -8  # glibc's mallopt parameter
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> None:
    """Cap glibc's malloc arenas (as MALLOC_ARENA_MAX would), before any thread starts.

    Each aiosqlite connection thread would otherwise get an arena of its own, which holds
    on to the memory of every batch of rows it ever built: about 3 MB of resident memory
    with 1,000 jobs in flight. The threads take turns under the GIL anyway, so two arenas
    cost no speed. Elsewhere than glibc this does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, arenas)


class Runner:
    """One worker process: a BatchWorker from :func:`tasks.worker.worker_settings`, built
    again (with fresh settings: the cron schedule starts over) after a Redis outage.

    The runner handles the signals (``handle_signals=False``) because they must also end
    the wait between workers; for a running worker it calls the handler arq would have
    installed itself. It runs the settings' ``on_shutdown`` itself, before arq's
    ``close()``: that needs Redis, and the resources must be closed (the SQLite threads
    before the event loop) whether Redis answers or not.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.grace = config.worker_shutdown_grace
        self.stopping = asyncio.Event()
        self.worker: BatchWorker | None = None
        self.connected = False  # once: a refusal after that is waited out like an outage
        self.refused: str | None = None  # why Redis would not take this worker at start

    def stop(self, signum: signal.Signals) -> None:
        """The first signal: stop claiming jobs; running ones get the grace period."""
        if self.stopping.is_set():
            logger.info("%s: already stopping", signum.name)
            return
        logger.info("%s: stopping (grace %gs for running jobs)", signum.name, self.grace)
        self.stopping.set()
        worker = self.worker
        if worker is not None:
            # arq's own signal handlers (what Worker(handle_signals=True) installs): stop
            # claiming, wait up to job_completion_wait for running jobs, cancel the rest
            # and the worker's main task.
            if self.grace:
                worker.handle_sig_wait_for_completion(signum)
            else:
                worker.handle_sig(signum)

    async def run(self) -> None:
        """Run workers until a signal stops them."""
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self.stop, signum)
        backoff = FIRST_BACKOFF_SECONDS
        while not self.stopping.is_set():
            settings = worker_settings(self.config)
            on_shutdown = settings["on_shutdown"]
            worker = self.worker = BatchWorker(**{**settings, "on_shutdown": None,
                                                  "handle_signals": False})
            lost = False
            try:
                await worker.async_run()
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
            except REDIS_ERRORS as exc:
                lost = not self.stopping.is_set()
                if "redis" in worker.ctx:  # it had connected: this is a new outage
                    backoff = FIRST_BACKOFF_SECONDS
                    self.connected = True
                reason = None if self.connected else refusal(exc)
                if reason is not None:  # a wrong password, an untrusted certificate
                    self.refused = f"{reason} at {mask_url(self.config.redis_url)}"
                    logger.error("cannot start: %s", self.refused)
                    lost = False
                elif lost:
                    logger.warning("Redis connection lost (%r); reconnecting in %.1fs",
                                   exc, backoff)
            finally:
                self.worker = None
                await self._close(worker, on_shutdown)
            if not lost:
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self.stopping.wait()
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _close(self, worker: BatchWorker,
                     on_shutdown: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Close a worker that ended, whatever state Redis is in."""
        # A worker that lost Redis still runs its jobs: cancel them (they stay queued).
        # ``tasks`` holds arq's run_job tasks; after a signal they are done already.
        for task in worker.tasks.values():
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_SECONDS):
                await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        await on_shutdown(worker.ctx)
        try:
            async with asyncio.timeout(CLOSE_SECONDS):
                await worker.close()  # the finish batch, arq's health key, the pool
        except REDIS_ERRORS as exc:
            logger.debug("closing the worker: %r", exc)
        pool: ArqRedis | None = worker.pool  # still open if close() did not get that far
        if pool is not None:
            with contextlib.suppress(*REDIS_ERRORS):
                await pool.aclose(close_connection_pool=True)


async def check(config: Config) -> int:
    """Exit status for ``--check``: 0 while a worker is alive."""
    try:
        pool = await open_pool(config)
        try:
            live = await workers.live_workers(pool)
        finally:
            await pool.aclose(close_connection_pool=True)
    except RedisRefused as exc:
        print(f"unhealthy: {exc}")
        return 1
    except REDIS_ERRORS as exc:
        print(f"unhealthy: Redis unreachable ({exc})")
        return 1
    if not live:
        print(f"unhealthy: no worker has beaten in {config.worker_live_within:g}s")
        return 1
    for info in live:
        print(f"healthy: worker {info.worker_id} running {len(info.running)} jobs")
    return 0


def run_processes(count: int) -> int:
    """Run ``count`` single worker processes and pass SIGINT/SIGTERM on to them."""
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    # ``-m``, not a file: it works as well from an installed wheel.
    command = [sys.executable, "-m", "tasks.runner", "--processes", "1"]
    children.extend(subprocess.Popen(command, preexec_fn=die_with_parent) for _ in range(count))
    return max(child.wait() for child in children)


def main(argv: list[str] | None = None) -> int:
    """The worker process's entry point."""
    parser = argparse.ArgumentParser(description="Run the snippet service's arq worker.")
    parser.add_argument("--check", action="store_true",
                        help="exit 0 if a worker beat in the last 30 s, else 1")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes to run (default: WORKER_PROCESSES, 1)")
    args = parser.parse_args(argv)
    # Until the event loop takes the signals over, remember one instead of dying of it.
    early: list[signal.Signals] = []
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda received, _frame: early.append(signal.Signals(received)))
    config = process_config()
    if args.check:
        return asyncio.run(check(config))
    processes = args.processes or config.worker_processes
    if processes > 1:
        return run_processes(processes)
    # asyncio's own loop: uvloop would save about 5 % of the CPU per job, but its library
    # alone adds about 3 MB of resident memory, and the worker is judged on memory per job
    # in flight far more than on CPU (see README, Performance).
    limit_malloc_arenas()
    runner = Runner(config)
    asyncio.run(_serve(runner, early))
    return 0 if runner.refused is None else 1


async def _serve(runner: Runner, early: list[signal.Signals]) -> None:
    if early:
        runner.stop(early[0])
    await runner.run()


if __name__ == "__main__":
    sys.exit(main())
