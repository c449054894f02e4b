"""Our job functions under arq 0.28's stock ``arq.worker.Worker``: ``python -m
bench.stock_worker``, the plain-arq reference of ``bench.highlight``.

It reads the same environment as ``run_worker.py`` (``Config.from_env()``), logs the same
way and runs the same worker definition, ``tasks.worker.worker_settings(config)`` (its
startup and shutdown, heartbeat and reconciler included), as ``arq
tasks.worker.WorkerSettings`` does: arq's own ``Worker`` with arq's signal handling, on
asyncio's own loop as run_worker.py. What ``tasks.runner`` adds does not run: no batched
hot path, no Redis outage handling.
"""

from __future__ import annotations

import asyncio

from arq.worker import Worker

from snippet_service.config import Config
from tasks.worker import process_config, worker_settings


async def run(config: Config) -> None:
    """Run arq's Worker as ``Worker.run()`` does, on the running loop; SIGINT/SIGTERM stop it."""
    worker = Worker(**worker_settings(config), handle_signals=True)
    task = worker.main_task = asyncio.ensure_future(worker.main())
    try:
        await asyncio.wait({task})
    finally:
        await worker.close()
    if not task.cancelled():
        task.result()  # an error that stopped the worker


def main() -> None:
    asyncio.run(run(process_config()))


if __name__ == "__main__":
    main()
