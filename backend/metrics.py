"""Prometheus metrics at /metrics, only when METRICS_ENABLED=true (nothing of this runs otherwise).

Requests are counted and timed by the edge middleware (one call per request, labels bounded: the
route *template*, a known method, the status). Pool and JWKS figures are read from their owners
when scraped, so they cost nothing between scrapes.
"""

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

UNMATCHED = "<unmatched>"
# Anything else a client invents is "OTHER": label values must stay a small, fixed set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LABELS = ("method", "route", "status")


class _Readings:
    """Pool and JWKS figures, asked of their owners at scrape time."""

    def __init__(self, database: object, jwks: object) -> None:
        self.database = database
        self.jwks = jwks

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        pool_stats = getattr(self.database, "pool_stats", None)
        if callable(pool_stats):
            stats: Mapping[str, int] = pool_stats()
            for name, value in stats.items():
                yield GaugeMetricFamily(f"todo_db_pool_{name}", f"Database connection pool: {name}.", value=value)
        fetches = getattr(self.jwks, "fetches", None)
        if isinstance(fetches, Mapping):
            family = CounterMetricFamily("todo_jwks_fetches", "JWKS fetches by outcome.", labels=["outcome"])
            for outcome, count in fetches.items():
                family.add_metric([outcome], count)
            yield family


class Metrics:
    """One registry per app (not prometheus_client's global one), so apps never share counters."""

    def __init__(self, *, database: object, jwks: object) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("todo_http_requests", "HTTP requests answered.", LABELS, registry=self.registry)
        self.latency = Histogram(
            "todo_http_request_duration_seconds",
            "Time from the request reaching the service to its response finishing.",
            LABELS,
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.database_unavailable = Counter(
            "todo_database_unavailable",
            "Requests answered 503 because the database was unavailable.",
            registry=self.registry,
        )
        self.registry.register(_Readings(database, jwks))

    def observe(self, scope: Scope, status: int | None, seconds: float) -> None:
        method = scope["method"] if scope["method"] in METHODS else "OTHER"
        route = getattr(scope.get("route"), "path", UNMATCHED)
        labels = (method, route, "none" if status is None else str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        if status == 503:  # the service's only 503 (errors.py): the database is away
            self.database_unavailable.inc()

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
