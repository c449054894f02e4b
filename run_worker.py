"""Start the arq worker: ``python run_worker.py`` (``--check`` reports its health)."""

import argparse
import logging
import sys

import uvloop

from snippet_service.config import Config, ConfigError
from tasks.runner import Runner, check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true",
                        help="exit 0 if a worker beat in the last 30 s, else 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        raise SystemExit(f"configuration error: {exc}") from None
    if args.check:
        return uvloop.run(check(config))
    uvloop.run(Runner(config).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
