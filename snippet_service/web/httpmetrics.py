"""One web process's HTTP request counts and latencies, for ``/metrics``.

Counting is on every request's path, so it is plain arithmetic on dicts and lists (about a
microsecond, no lock: the event loop is one thread); the metric families are built from
those numbers only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREFIX = "snippets_"
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Latency:
    """One route's latency histogram: a count per bucket (the last: above every bound)."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(HTTP_BUCKETS) + 1)
        self.total = 0.0


class HttpMetrics(Collector):
    """This web process's request counts and latencies (one per app)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[str, _Latency] = {}
        self.registry = CollectorRegistry()
        self.registry.register(self)
        ProcessCollector(registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        latency = self.latency.get(route)
        if latency is None:
            latency = self.latency[route] = _Latency()
        latency.counts[bisect_left(HTTP_BUCKETS, seconds)] += 1
        latency.total += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            PREFIX + "http_requests", "HTTP requests answered, by route name, method and status",
            labels=["route", "method", "status"])
        for (route, method, status), count in sorted(self.requests.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        latency = HistogramMetricFamily(
            PREFIX + "http_request_duration_seconds",
            "Time from a request's arrival to its answer (a live-update stream: its life)",
            labels=["route"])
        for route, seen in sorted(self.latency.items()):
            cumulative, buckets = 0, []
            for bound, count in zip([*map(str, HTTP_BUCKETS), "+Inf"], seen.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, seen.total)
        yield latency
