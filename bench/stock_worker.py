"""Our job functions under arq 0.28's stock ``arq.worker.Worker``: ``python -m
bench.stock_worker``, the plain-arq reference of ``bench.highlight``.

It reads the same environment as ``run_worker.py`` (``Config.from_env()``) and logs the
same way, but runs arq's own ``Worker`` with ``tasks.worker.worker_options(config)`` and the
per-process resources opened by ``tasks.worker.startup`` and closed by
``tasks.worker.shutdown``, with arq's signal handling, on asyncio's own loop as
run_worker.py. None of run_worker.py's extras run: no batched hot path, no Redis outage
handling, no heartbeat, no reconciler.
"""

from __future__ import annotations

import asyncio
import logging

from arq.worker import Worker

from snippet_service.config import Config, ConfigError
from tasks.worker import QuietJobLines, shutdown, startup, worker_options


async def run(config: Config) -> None:
    """Run arq's Worker as ``Worker.run()`` does, on the running loop; SIGINT/SIGTERM stop it."""
    worker = Worker(**worker_options(config), ctx={"config": config}, on_startup=startup,
                    on_shutdown=shutdown, handle_signals=True)
    task = worker.main_task = asyncio.ensure_future(worker.main())
    try:
        await asyncio.wait({task})
    finally:
        await worker.close()
    if not task.cancelled():
        task.result()  # an error that stopped the worker


def main() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("arq.worker").addFilter(QuietJobLines())
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    asyncio.run(run(config))


if __name__ == "__main__":
    main()
