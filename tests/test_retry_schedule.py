"""The retry policy, in-process: Sidekiq's schedule with its jitter, Retry-After within
bounds, the number of retries, and which failures a policy retries. test_retries.py checks
the schedule end to end from the times an upstream saw."""

from __future__ import annotations

import random

import pytest

from tasks.client import HighlighterRejected, HighlighterUnavailable
from tasks.retry import (
    DEFAULT_RETRIES,
    MAX_RETRY_AFTER_SECONDS,
    MIN_RETRY_AFTER_SECONDS,
    RetryPolicy,
    sidekiq_delay,
)


class Fixed(random.Random):
    """A random source that always answers ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize(("count", "low", "high"), [
    (0, 15, 25), (1, 16, 36), (2, 31, 61), (3, 96, 136), (9, 6576, 6676),
    (24, 331791, 332041),
])
def test_sidekiqs_schedule_and_its_jitter(count: int, low: float, high: float) -> None:
    """count⁴ + 15 seconds, plus up to 10·(count + 1) of jitter."""
    assert sidekiq_delay(count, rng=Fixed(0.0)) == low
    assert sidekiq_delay(count, rng=Fixed(0.999999)) == pytest.approx(high, abs=1e-3)
    rng = random.Random(count)
    assert all(low <= sidekiq_delay(count, rng=rng) < high for _ in range(200))


def test_the_schedule_scales() -> None:
    assert sidekiq_delay(2, 0.01, Fixed(0.5)) == pytest.approx((16 + 15 + 15) * 0.01)
    assert sidekiq_delay(0, 0, Fixed(0.5)) == 0


def test_all_25_retries_take_about_21_days() -> None:
    total = sum(sidekiq_delay(count, rng=Fixed(0.5)) for count in range(DEFAULT_RETRIES))
    assert 20 * 86400 < total < 22 * 86400


@pytest.mark.parametrize(("retry", "retries"), [(True, DEFAULT_RETRIES), (False, 0), (0, 0),
                                                (3, 3), (-2, 0)])
def test_retries(retry: bool | int, retries: int) -> None:
    assert RetryPolicy(retry=retry).retries == retries


@pytest.mark.parametrize(("retry_after", "delay"), [
    (0, MIN_RETRY_AFTER_SECONDS),  # never an immediate retry storm
    (0.2, MIN_RETRY_AFTER_SECONDS), (7, 7.0), (7.5, 7.5),
    (10**9, MAX_RETRY_AFTER_SECONDS),
])
def test_retry_after_is_honoured_within_bounds(retry_after: float, delay: float) -> None:
    assert RetryPolicy(retry=3).delay(0, 1.0, retry_after=retry_after) == delay
    assert RetryPolicy(retry=3).delay(5, 0.01, retry_after=retry_after) == delay  # unscaled


def test_without_retry_after_the_schedule_applies() -> None:
    assert 15 <= RetryPolicy(retry=3).delay(2, 1.0) <= 2**4 + 15 + 30


def test_a_policy_retries_only_what_the_job_calls_transient() -> None:
    policy = RetryPolicy(retry=3, retry_on=(HighlighterUnavailable,),
                         fails_on=(HighlighterRejected,))
    unavailable = HighlighterUnavailable("highlighter answered 503")
    rejected = HighlighterRejected("unknown language")
    bug = TypeError("a bug")
    assert policy.is_transient(unavailable)
    assert not policy.is_transient(rejected) and not policy.is_transient(bug)
    assert policy.is_transient(bug, timed_out=True)  # the job's own timeout always retries
    assert policy.is_expected(unavailable) and policy.is_expected(rejected)
    assert not policy.is_expected(bug)  # a bug: dead at once, logged with its traceback
