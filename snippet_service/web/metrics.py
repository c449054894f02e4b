"""``GET /metrics``: Prometheus' text exposition format, built with prometheus_client, under
the same access rule as ``/jobs``.

Two kinds of figures:

- this web process's own: requests by route, method and status and their latency
  (counted in process by :func:`count_requests`; Prometheus scrapes each web process), and
  prometheus_client's ``process_*`` figures;
- the cluster's, read from Redis at each scrape (the same answer from every web process):
  queue depth and latency, scheduled, retrying and dead counts, live workers, paused queues,
  the breaker, and jobs by function and outcome with their duration histograms. Workers
  flush those job counts to Redis once a second (``snippet_service.stats``), so the totals
  of every worker process on every host arrive in one place, also from workers that have
  since stopped; no worker serves an endpoint of its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from snippet_service import control, deadset, stats, workers
from snippet_service.web.dashboard.data import queue_stats
from snippet_service.web.httpmetrics import PREFIX, HttpMetrics
from snippet_service.web.middlewares import Handler
from snippet_service.web.typedefs import CONFIG, METRICS, REDIS

logger = logging.getLogger("snippet_service.web.metrics")

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CLIENT_GONE = 499  # the client went away before the answer (nginx's code)


def _route(request: web.Request) -> str:
    """The route's name (a bounded label): "unmatched" for a URL no route takes."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return "unmatched"
    route = match_info.route
    if route.name:
        return route.name
    return route.resource.canonical if route.resource is not None else "unmatched"


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route, method and status, and time it (the outermost
    middleware, so it sees the answers the error middleware makes)."""
    started, status = time.perf_counter(), 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BaseException:
        status = CLIENT_GONE if request.transport is None or request.transport.is_closing() \
            else 500
        raise
    finally:
        method = request.method if request.method in METHODS else "OTHER"
        request.app[METRICS].observe(_route(request), method, status,
                                     time.perf_counter() - started)


class _Snapshot(Collector):
    """Metric families read from Redis for one scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def _gauge(name: str, documentation: str, value: float,
           labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


async def _cluster(request: web.Request) -> list[Metric]:
    """The queue's, the workers' and the jobs' figures, from Redis."""
    redis, queue = request.app[REDIS], request.app[CONFIG].queue_name
    depth = await queue_stats(redis, queue)
    live = await workers.live_workers(redis)
    paused = await control.paused(redis)
    breaker = await control.breaker_state(redis)
    processed, failed = await stats.totals(redis)
    families: list[Metric] = [
        _gauge("redis_up", "Whether Redis answered this scrape", 1),
        _gauge("queue_depth", "Jobs in the queue (ready and deferred)", depth["size"],
               {"queue": queue}),
        _gauge("queue_ready", "Jobs in the queue ready to run", depth["ready"],
               {"queue": queue}),
        _gauge("queue_latency_seconds", "Age of the oldest ready job", depth["latency"],
               {"queue": queue}),
        _gauge("scheduled_jobs", "Deferred jobs in the queue, retrying ones included "
               "(the Scheduled page)", depth["deferred"], {"queue": queue}),
        _gauge("retrying_jobs", "Jobs waiting to retry",
               await redis.zcard(deadset.RETRY_SET)),
        _gauge("dead_jobs", "Jobs in the dead set", await deadset.dead_count(redis)),
        _gauge("live_workers", "Worker processes whose heartbeat is current", len(live)),
        _gauge("running_jobs", "Jobs the live workers are running",
               sum(len(info.running) for info in live)),
        _gauge("breaker_open", "1 while the highlighter's circuit breaker is open",
               1 if breaker.state == "open" else 0),
    ]
    paused_family = GaugeMetricFamily(PREFIX + "queue_paused", "1 while the queue is paused",
                                      labels=["queue"])
    for name in sorted({queue, *paused}):
        paused_family.add_metric([name], 1 if name in paused else 0)
    families.append(paused_family)
    totals = CounterMetricFamily(PREFIX + "jobs_processed", "Job runs ended, failed ones "
                                 "included (the dashboard's processed)", value=processed)
    failures = CounterMetricFamily(PREFIX + "jobs_failed", "Job runs that failed (the "
                                   "dashboard's failed)", value=failed)
    families += [totals, failures, *_job_families(await stats.job_totals(redis))]
    return families


def _job_families(table: list[stats.Durations]) -> list[Metric]:
    runs = CounterMetricFamily(PREFIX + "jobs", "Job runs by function and outcome (success, "
                               "retry or dead), from every worker", labels=["function", "outcome"])
    durations = HistogramMetricFamily(PREFIX + "job_duration_seconds", "Run time of jobs by "
                                      "function, from every worker", labels=["function"])
    for entry in table:
        for outcome, count in sorted(entry.outcomes.items()):
            runs.add_metric([entry.function, outcome], count)
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, stats.DURATION_BUCKETS), "+Inf"], entry.buckets,
                                strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        durations.add_metric([entry.function], buckets, entry.total_seconds)
    return [runs, durations]


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: this process's HTTP figures and the cluster's from Redis."""
    try:
        families = await _cluster(request)
    except (RedisError, OSError) as exc:
        logger.warning("metrics: Redis did not answer: %r", exc)
        families = [_gauge("redis_up", "Whether Redis answered this scrape", 0)]
    snapshot = CollectorRegistry(auto_describe=False)
    snapshot.register(_Snapshot(families))
    body = generate_latest(request.app[METRICS].registry) + generate_latest(snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


def setup_metrics(app: web.Application) -> None:
    """The /metrics route and this process's HTTP metrics (count_requests counts them)."""
    app[METRICS] = HttpMetrics()
    app.router.add_get("/metrics", metrics, name="metrics")
