"""Start the arq worker: ``python run_worker.py`` (``--check`` reports its health,
``--processes N`` runs N worker processes side by side)."""

import argparse
import asyncio
import logging
import signal
import subprocess
import sys

from snippet_service.config import Config, ConfigError
from snippet_service.launcher import die_with_parent
from tasks.runner import Runner, check, limit_malloc_arenas
from tasks.worker import QuietJobLines


def run_processes(count: int) -> int:
    """Run ``count`` single worker processes and pass SIGINT/SIGTERM on to them."""
    children = [
        subprocess.Popen([sys.executable, __file__, "--processes", "1"], preexec_fn=die_with_parent)
        for _ in range(count)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    return max(child.wait() for child in children)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 0 if a worker beat in the last 30 s, else 1")
    parser.add_argument("--processes", type=int, default=None, metavar="N",
                        help="worker processes to run (default: WORKER_PROCESSES, 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("arq.worker").addFilter(QuietJobLines())
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    if args.check:
        return asyncio.run(check(config))
    processes = args.processes or config.worker_processes
    if processes > 1:
        return run_processes(processes)
    # asyncio's own loop: uvloop would save about 5 % of the CPU per job, but its library
    # alone adds about 3 MB of resident memory, and the worker is judged on memory per job
    # in flight far more than on CPU (see README, Performance).
    limit_malloc_arenas()
    asyncio.run(Runner(config).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
