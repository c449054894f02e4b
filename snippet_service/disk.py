"""Free space on the SQLite file's filesystem: creation stops (507) and ``/healthz`` turns
unhealthy (503) while it is below MIN_FREE_DISK_MB."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from snippet_service.config import Config

logger = logging.getLogger("snippet_service.disk")

MIB = 1024 * 1024


def free_mb(db_path: Path) -> float | None:
    """Free megabytes (MiB) where the database lives, for unprivileged writers; None when
    the filesystem cannot be asked."""
    try:
        return shutil.disk_usage(db_path.parent).free / MIB
    except OSError as exc:
        logger.warning("free disk space of %s unknown: %r", db_path, exc)
        return None


def disk_low(config: Config) -> bool:
    """Whether free space is below MIN_FREE_DISK_MB (never when the check is off or the
    filesystem cannot be asked)."""
    if not config.min_free_disk_mb:
        return False
    free = free_mb(config.db_path)
    return free is not None and free < config.min_free_disk_mb
