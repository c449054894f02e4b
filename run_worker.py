"""Start the arq worker: ``python run_worker.py``."""

import asyncio
import logging

import uvloop
from arq.worker import run_worker

from snippet_service.config import Config, ConfigError
from tasks.worker import WorkerSettings, worker_options


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    asyncio.set_event_loop(uvloop.new_event_loop())
    run_worker(WorkerSettings, **worker_options(config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
