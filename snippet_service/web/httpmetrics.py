"""One web process's HTTP request counts and latencies, for ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

PREFIX = "snippets_"
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """This web process's request counts and latencies (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            PREFIX + "http_requests", "HTTP requests answered, by route name, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            PREFIX + "http_request_duration_seconds",
            "Time from a request's arrival to its answer (a live-update stream: its life)",
            ["route"], buckets=HTTP_BUCKETS, registry=self.registry)
        ProcessCollector(registry=self.registry)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self.requests.labels(route, method, str(status)),
                                              self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)
