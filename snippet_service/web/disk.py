"""Free space on the SQLite file's filesystem: creation stops (507) and ``/healthz`` turns
unhealthy (503) while it is below MIN_FREE_DISK_MB. With DATABASE_URL (PostgreSQL, on a
disk of its own) there is no local database file, and no check."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from snippet_service.config import Config

logger = logging.getLogger("snippet_service.web.disk")

MIB = 1024 * 1024


def free_mb(db_path: Path) -> float | None:
    """Free megabytes (MiB) where the database lives, for unprivileged writers; None when
    the filesystem cannot be asked."""
    try:
        return shutil.disk_usage(db_path.parent).free / MIB
    except OSError as exc:
        logger.warning("free disk space of %s unknown: %r", db_path, exc)
        return None


CHECK_EVERY_SECONDS = 1.0
_last_check: dict[Path, tuple[float, bool]] = {}


def disk_low(config: Config) -> bool:
    """Whether free space is below MIN_FREE_DISK_MB (never when the check is off or the
    filesystem cannot be asked). The filesystem is asked at most once a second: creation
    checks this on every request."""
    if not config.min_free_disk_mb or config.database_url:
        return False
    now = time.monotonic()
    checked_at, low = _last_check.get(config.db_path, (-CHECK_EVERY_SECONDS, False))
    if now - checked_at >= CHECK_EVERY_SECONDS:
        free = free_mb(config.db_path)
        low = free is not None and free < config.min_free_disk_mb
        _last_check[config.db_path] = (now, low)
    return low
