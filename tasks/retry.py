"""Retry policy: which failures retry, and when (Sidekiq's schedule)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from tasks.client import HighlighterError

DEFAULT_RETRIES = 25
MAX_RETRY_AFTER_SECONDS = 3600.0
MIN_RETRY_AFTER_SECONDS = 1.0  # "Retry-After: 0" must not burn every retry at once


class PermanentError(Exception):
    """A failure that no retry can fix; the job goes to the dead set at once."""


def is_transient(exc: BaseException) -> bool:
    """Connection errors, timeouts, 429/5xx and unexpected errors retry; refusals do not."""
    if isinstance(exc, HighlighterError):
        return exc.transient
    return not isinstance(exc, PermanentError)


def sidekiq_delay(count: int, scale: float = 1.0, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``count + 1``: count⁴ + 15 + up to 10·(count+1) of jitter."""
    jitter = (rng or random).random() * 10 * (count + 1)
    return float(count**4 + 15 + jitter) * scale


@dataclass(frozen=True)
class RetryPolicy:
    """``retry=False`` is one try; ``retry=N`` is N retries after the first try."""

    retry: bool | int = True
    timeout: float = 10.0

    @property
    def retries(self) -> int:
        if self.retry is True:
            return DEFAULT_RETRIES
        if self.retry is False:
            return 0
        return max(0, int(self.retry))

    def delay(self, count: int, scale: float, retry_after: float | None = None) -> float:
        """When to try again after the ``count``-th retry (0-based), honouring Retry-After."""
        if retry_after is not None:
            return min(max(retry_after, MIN_RETRY_AFTER_SECONDS), MAX_RETRY_AFTER_SECONDS)
        return sidekiq_delay(count, scale)
