"""`make run` and ``snippet-service``: start Valkey (unless REDIS_URL is set), the
highlighter (unless HIGHLIGHTER_URL is set), the worker and the web app; stop them all on
SIGINT or SIGTERM. The data is in the SQLite file SNIPPETS_DB, or with DATABASE_URL set, in
that PostgreSQL, which is never started here.

The children are this Python's modules (``python -m …``), run in the current directory
(SNIPPETS_DB, ``var/snippets.db`` by default, is relative to it), so an installed package
runs the same way as the repository. They inherit the environment, LOG_FORMAT included.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from snippet_service.config import Config, ConfigError, mask_url
from snippet_service.logs import setup_logging
from snippet_service.valkey import free_port, private_password, start_valkey, wait_for_port

logger = logging.getLogger("snippet_service.launcher")

# The worker gives running jobs WORKER_SHUTDOWN_GRACE (25 s by default) to finish; the
# web app and the highlighter stop within a few seconds.
STOP_GRACE_SECONDS = 30.0
PR_SET_PDEATHSIG = 1


class Stop(Exception):
    """A signal asked us to stop."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM us if the launcher dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _python(module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m module`` with this interpreter, in the current directory."""
    return subprocess.Popen(
        [sys.executable, "-m", module],
        env=env,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )


def url_host(host: str) -> str:
    """HOST as it goes in a URL: IPv6 addresses in brackets; any-address as loopback."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def valkey_preexec() -> None:
    """In the private Valkey: a process group of its own, so that the terminal's Ctrl-C
    does not stop it under the others (``stop_all`` stops it last), and death with us."""
    os.setpgid(0, 0)
    die_with_parent()


def stop_all(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """Stop the services, then the private Valkey they use (so that the worker can still
    finish and record its jobs): SIGTERM, wait, then SIGKILL what is left."""
    _stop([item for item in processes if item[0] != "valkey"])
    _stop([item for item in processes if item[0] == "valkey"])


def _stop(processes: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _name, process in reversed(processes):
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in reversed(processes):
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in time; killing it", name)
            process.kill()
            process.wait()


def main() -> int:
    """Run the whole service until SIGINT or SIGTERM; the exit code says how it ended."""
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging()
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    env = dict(os.environ)
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        if not config.redis_url_set:
            port = int(env.get("VALKEY_PORT") or free_port())
            data_dir = config.db_path.parent / "valkey"
            password = private_password(data_dir / "password")
            processes.append(("valkey", start_valkey(port, data_dir, preexec_fn=valkey_preexec,
                                                     password=password)))
            env["REDIS_URL"] = f"redis://:{password}@127.0.0.1:{port}/0"
            logger.info("private Valkey on redis://127.0.0.1:%d/0 (data in %s, password in %s)",
                        port, data_dir, data_dir / "password")
        if config.database_url:
            logger.info("data in PostgreSQL at %s (DATABASE_URL; never started here)",
                        mask_url(config.database_url))
        else:
            logger.info("data in the SQLite file %s (SNIPPETS_DB)", config.db_path)
        if not config.highlighter_url_set:
            processes.append(("highlighter", _python("snippet_service.highlighter", env)))
            host = config.highlighter_host  # loopback unless HIGHLIGHTER_HOST says otherwise
            wait_for_port(config.highlighter_port, 30.0, processes[-1][1], host)
            env["HIGHLIGHTER_URL"] = f"http://{url_host(host)}:{config.highlighter_port}/"
        processes.append(("worker", _python("tasks.runner", env)))
        processes.append(("web", _python("snippet_service.web.server", env)))
        wait_for_port(config.port, 30.0, processes[-1][1], config.host)
        url = f"http://{url_host(config.host)}:{config.port}/"
        print(f"snippet-service is running at {url} (Ctrl-C stops it)", flush=True)
        parent = os.getppid()
        while True:
            if os.getppid() != parent:
                logger.info("the parent process (make) is gone; stopping")
                return 0
            for name, process in processes:
                if process.poll() is not None:
                    logger.error("%s exited with code %s; stopping", name, process.returncode)
                    return 1
            time.sleep(0.5)
    except Stop as stop:
        logger.info("%s received; stopping", stop)
        return 0
    except Exception as exc:
        logger.error("could not start: %s", exc)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_all(processes)


if __name__ == "__main__":
    sys.exit(main())
