"""GET /metrics against a real stack, parsed with prometheus_client's own parser: job counts
aggregated through Redis match the snippets highlighted, request counts by route, queue
depth and the other gauges, and the same access rule as /jobs."""

from __future__ import annotations

import base64
import uuid

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from snippet_service import control
from tests.conftest import MakeStack
from tests.helpers import create_via_api, until, wait_for_snippet
from tests.servers import Stack

PASSWORD = "metrics-password"
QUEUE = "snippets:queue"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def metrics_stack(make_stack: MakeStack, flaky_highlighter: str) -> Stack:
    return make_stack(shared=True, highlighter_url=flaky_highlighter)


async def scrape(http: aiohttp.ClientSession, base: str,
                 headers: dict[str, str] | None = None) -> Samples:
    async with http.get(f"{base}/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.timeout(90)
async def test_metrics_report_jobs_requests_and_the_queue(
        metrics_stack: Stack, http: aiohttp.ClientSession) -> None:
    base, tag = metrics_stack.url, uuid.uuid4().hex[:8]
    before = await scrape(http, base)
    created_before = value(before, "snippets_http_requests_total", route="api_create_snippet",
                           method="POST", status="201")
    good = [await create_via_api(http, base, "python", f"x = {n} # {tag}") for n in range(5)]
    dead = await create_via_api(http, base, "bad400", f"no {tag}")
    later = []
    for n in range(3):
        async with http.post(f"{base}/api/snippets", json={
                "language": "python", "code": f"later {n} {tag}", "highlight_in": 3600}) as r:
            assert r.status == 201
            later.append(await r.json())
    for body in [*good, dead]:
        await wait_for_snippet(http, base, body["id"])
    async with http.get(f"{base}/no/such/page") as response:
        assert response.status == 404

    def jobs(samples: Samples, outcome: str) -> float:
        return value(samples, "snippets_jobs_total", function="highlight_snippet",
                     outcome=outcome)

    async def flushed() -> Samples | None:  # workers flush their counts once a second
        samples = await scrape(http, base)
        done = (jobs(samples, "success") - jobs(before, "success") == 5
                and jobs(samples, "dead") - jobs(before, "dead") == 1)
        return samples if done else None

    samples = await until(flushed, 15, "the job counts never reached /metrics")
    assert samples is not None
    assert value(samples, "snippets_jobs_processed_total") - \
        value(before, "snippets_jobs_processed_total") == 6
    count = value(samples, "snippets_job_duration_seconds_count", function="highlight_snippet")
    assert count - value(before, "snippets_job_duration_seconds_count",
                         function="highlight_snippet") == 6
    assert value(samples, "snippets_job_duration_seconds_bucket", function="highlight_snippet",
                 le="+Inf") == count
    assert value(samples, "snippets_job_duration_seconds_sum", function="highlight_snippet") > 0
    # Requests by route and status (this web process's own counts).
    assert value(samples, "snippets_http_requests_total", route="api_create_snippet",
                 method="POST", status="201") - created_before == 9
    assert value(samples, "snippets_http_requests_total", route="unmatched", method="GET",
                 status="404") >= 1
    assert value(samples, "snippets_http_request_duration_seconds_count",
                 route="api_create_snippet") >= 9
    # The queue holds the 3 deferred jobs (and, now and then, the reconciler's next run).
    redis = Redis.from_url(metrics_stack.redis_url)
    try:
        async def queue_matches() -> bool:
            cron = len([job for job in await redis.zrange(QUEUE, 0, -1)
                        if job.startswith(b"cron:")])
            samples = await scrape(http, base)
            return value(samples, "snippets_queue_depth", queue=QUEUE) == 3 + cron \
                and value(samples, "snippets_scheduled_jobs", queue=QUEUE) == 3 + cron

        await until(queue_matches, 10, "queue depth in /metrics differs from the queue")
        assert value(samples, "snippets_queue_latency_seconds", queue=QUEUE) >= 0
        assert value(samples, "snippets_dead_jobs") == 1
        assert value(samples, "snippets_retrying_jobs") == 0
        assert value(samples, "snippets_live_workers") == 1
        assert value(samples, "snippets_redis_up") == 1
        assert value(samples, "snippets_breaker_open") == 0
        assert ("snippets_queue_paused", frozenset({("queue", QUEUE)})) in samples
        assert value(samples, "snippets_queue_paused", queue=QUEUE) == 0
        await control.pause(redis, QUEUE, by="test")
        try:
            paused = await scrape(http, base)
        finally:
            await control.resume(redis, QUEUE)
        assert value(paused, "snippets_queue_paused", queue=QUEUE) == 1
    finally:
        await redis.aclose()
    assert any(name == "process_resident_memory_bytes" for name, _ in samples)


async def test_metrics_answer_like_the_dashboard(
        metrics_stack: Stack, make_stack: MakeStack, http: aiohttp.ClientSession) -> None:
    url, port = metrics_stack.url, metrics_stack.port
    for headers in ({"Host": f"rebind.example:{port}"}, {"X-Forwarded-For": "203.0.113.9"},
                    {"X-Real-IP": "203.0.113.9"}):
        async with http.get(f"{url}/metrics", headers=headers) as response:
            assert response.status == 403, headers
    await scrape(http, url, {"Host": f"localhost:{port}"})
    locked = make_stack(shared=True, DASHBOARD_PASSWORD=PASSWORD)
    async with http.get(f"{locked.url}/metrics") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    wrong = base64.b64encode(b"prometheus:wrong").decode()
    async with http.get(f"{locked.url}/metrics",
                        headers={"Authorization": f"Basic {wrong}"}) as response:
        assert response.status == 401
    right = base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
    samples = await scrape(http, locked.url, {"Authorization": f"Basic {right}",
                                              "X-Forwarded-For": "203.0.113.9"})
    assert value(samples, "snippets_redis_up") == 1
