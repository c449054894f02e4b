"""Retry policy: which failures a job retries, and when (Sidekiq's schedule).

Each job says what is transient for it (``retry_on``): those failures retry on the
schedule until the retries run out. Its own timeout is always transient. Anything else
sends the job to the dead set at once; ``fails_on`` names the final failures the job
foresees (a refusal), the rest are unexpected (a bug) and are logged with their traceback.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_RETRIES = 25
MAX_RETRY_AFTER_SECONDS = 3600.0
MIN_RETRY_AFTER_SECONDS = 1.0  # "Retry-After: 0" must not burn every retry at once

Failures = tuple[type[BaseException], ...]


def sidekiq_delay(count: int, scale: float = 1.0, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``count + 1``: count⁴ + 15 + up to 10·(count+1) of jitter."""
    jitter = (rng or random).random() * 10 * (count + 1)
    return float(count**4 + 15 + jitter) * scale


@dataclass(frozen=True)
class RetryPolicy:
    """``retry=False`` is one try; ``retry=N`` is N retries after the first try.

    ``retry_on``: the failures that may pass (retried); ``fails_on``: the failures the job
    expects to be final (dead at once, logged without a traceback). Every other exception
    is a bug: dead at once, logged at ERROR with its traceback.
    """

    retry: bool | int = True
    timeout: float = 10.0
    retry_on: Failures = ()
    fails_on: Failures = ()

    @property
    def retries(self) -> int:
        if self.retry is True:
            return DEFAULT_RETRIES
        if self.retry is False:
            return 0
        return max(0, int(self.retry))

    def is_transient(self, exc: BaseException, timed_out: bool = False) -> bool:
        """Whether this failure may pass: the job's own timeout, or one of ``retry_on``."""
        return timed_out or isinstance(exc, self.retry_on)

    def is_expected(self, exc: BaseException) -> bool:
        """Whether this failure is one the job foresees (transient or ``fails_on``)."""
        return isinstance(exc, self.retry_on + self.fails_on)

    def delay(self, count: int, scale: float, retry_after: float | None = None) -> float:
        """When to try again after the ``count``-th retry (0-based), honouring Retry-After."""
        if retry_after is not None:
            return min(max(retry_after, MIN_RETRY_AFTER_SECONDS), MAX_RETRY_AFTER_SECONDS)
        return sidekiq_delay(count, scale)
