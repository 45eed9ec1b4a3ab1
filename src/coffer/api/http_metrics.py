"""Prometheus metrics of the HTTP API, measured by a pure ASGI middleware (the outermost
layer), and the exposition that ``/metrics`` serves.

Series (every label takes a bounded set of values; no names of organizations, projects,
environments, keys or people ever appear):

- ``coffer_http_request_duration_seconds`` (histogram), labels ``route`` (the route
  template, such as ``/api/v1/projects/{project}/environments/{environment}/secrets/{key}``;
  ``other`` for a request no route matched), ``method`` (the standard methods, else
  ``other``) and ``status`` (``2xx``, ``3xx``, ``4xx``, ``5xx``). The time runs from the
  request's arrival at coffer to the end of its response body.
- ``coffer_secret_reads_total``: 2xx answers that revealed secret values: ``GET`` of a
  secret (any version), of an ephemeral secret and of an environment's export (one bulk
  read counts once), and the reveal of a share link. ``HEAD`` reveals nothing and is not
  counted.
- ``coffer_secret_writes_total``: 2xx answers that created secret versions or destroyed
  secrets: ``PUT`` and ``DELETE`` of a secret, rollback, import, promote (a dry run counts
  too: the route alone cannot tell), creating and deleting an ephemeral secret, creating a
  share. Changing a secret's limits (``PATCH``) creates no version and is not counted.
- ``coffer_rate_limit_rejections_total``, label ``scope``: 429 answers; ``login`` for the
  routes that check a password (login, accepting an invitation, changing a password),
  ``api`` for every other.

Routes: FastAPI's router puts the matched route in the scope; ``install`` adds a layer
inside FastAPI that hands it to the outer middleware (through an object the middleware
puts in the scope, so it survives layers that copy the scope). A layer that answers before
FastAPI routes (the hot read path) calls ``set_route(scope, template)`` instead.

Several worker processes: when the environment variable ``PROMETHEUS_MULTIPROC_DIR`` names a
directory before ``prometheus_client`` is first imported (the server sets it to a fresh
directory when it starts more than one worker), every process writes its series to files
there and ``/metrics`` (whichever worker answers) adds up all processes' files with
``MultiProcessCollector``. Without it each process keeps its series in memory and
``/metrics`` shows that process's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
SCOPE_KEY = "coffer.metrics"
OTHER = "other"

_PROJECT = "/api/v1/projects/{project}"
_ENVIRONMENT = _PROJECT + "/environments/{environment}"
SECRET_ROUTE = _ENVIRONMENT + "/secrets/{key}"
"""The template of a secret's route (the hot read path answers ``GET`` on it)."""

READ_ROUTES = frozenset(
    {
        ("GET", SECRET_ROUTE),
        ("GET", "/api/v1/ephemeral/{key}"),
        ("GET", _ENVIRONMENT + "/export"),
        ("POST", "/api/v1/shares/{token}/reveal"),
    }
)
WRITE_ROUTES = frozenset(
    {
        ("PUT", SECRET_ROUTE),
        ("DELETE", SECRET_ROUTE),
        ("POST", _ENVIRONMENT + "/rollback/{key}"),
        ("POST", _ENVIRONMENT + "/import"),
        ("POST", _PROJECT + "/promote"),
        ("POST", "/api/v1/ephemeral"),
        ("DELETE", "/api/v1/ephemeral/{key}"),
        ("POST", "/api/v1/shares"),
    }
)
LOGIN_PATHS = frozenset(
    {"/api/v1/auth/login", "/api/v1/invitations/accept", "/api/v1/auth/password"}
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
# From a cached hot read (~0.1 ms) to a slow rotation step.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_CONVERTOR = re.compile(r"\{(\w+):[^}]*\}")


def template_of(path: str) -> str:
    """A route's path as a template label: ``{key:secretkey}`` becomes ``{key}``."""
    return _CONVERTOR.sub(r"{\1}", path)


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, or None when it is off."""
    return os.environ.get(MULTIPROCESS_VARIABLE) or None


class _Exchange:
    """What the middleware learns about one request: its route template and status."""

    __slots__ = ("route", "send", "status")

    def __init__(self, send: Send) -> None:
        self.route: str | None = None
        self.status = 0
        self.send = send

    async def send_response(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)


def set_route(scope: Scope, template: str) -> None:
    """Records the route template of a request answered before FastAPI routes it (for
    example ``SECRET_ROUTE`` by the hot read path). Does nothing outside the middleware."""
    exchange = scope.get(SCOPE_KEY)
    if exchange is not None:
        exchange.route = template


class _Series:
    """The histogram child and the counter (if any) one (route, method, status) feeds."""

    __slots__ = ("counter", "duration")

    def __init__(self, duration: Histogram, counter: Counter | None) -> None:
        self.duration = duration
        self.counter = counter


class HttpMetrics:
    """The HTTP series of one app. They belong to no registry: ``exposition`` collects them
    (or, in multiprocess mode, every process's files)."""

    def __init__(self) -> None:
        self.duration = Histogram(
            "coffer_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route template.",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=None,
        )
        self.reads = Counter(
            "coffer_secret_reads",
            "Successful requests that revealed secret values (see coffer.api.http_metrics).",
            registry=None,
        )
        self.writes = Counter(
            "coffer_secret_writes",
            "Successful requests that created secret versions or destroyed secrets.",
            registry=None,
        )
        self.rejections = Counter(
            "coffer_rate_limit_rejections",
            "Requests refused with 429 by a rate limit, by scope (login or api).",
            ["scope"],
            registry=None,
        )
        self._rejected = {scope: self.rejections.labels(scope=scope) for scope in ("login", "api")}
        self._series: dict[tuple[str, str, int], _Series] = {}

    def collectors(self) -> tuple[Collector, ...]:
        """The series, for a registry that exposes them."""
        return (self.duration, self.reads, self.writes, self.rejections)

    def observe(
        self, route: str | None, method: str, status: int, path: str, seconds: float
    ) -> None:
        """Records one finished request."""
        if method not in _METHODS:
            method = OTHER
        key = (route or OTHER, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._new_series(*key)
        series.duration.observe(seconds)
        if series.counter is not None:
            series.counter.inc()
        if status == 429:
            self._rejected["login" if path in LOGIN_PATHS else "api"].inc()

    def _new_series(self, route: str, method: str, status: int) -> _Series:
        status_class = _STATUS_CLASSES[status // 100 - 1] if 100 <= status < 600 else OTHER
        counter = None
        if 200 <= status < 300:
            if (method, route) in READ_ROUTES:
                counter = self.reads
            elif (method, route) in WRITE_ROUTES:
                counter = self.writes
        return _Series(self.duration.labels(route, method, status_class), counter)


class HttpMetricsMiddleware:
    """Times every HTTP request and records it in ``metrics``."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(send)
        scope[SCOPE_KEY] = exchange
        started = time.perf_counter()
        try:
            await self.app(scope, receive, exchange.send_response)
        finally:
            # An exception before the response started reaches the client as a 500.
            self.metrics.observe(
                exchange.route,
                scope["method"],
                exchange.status or 500,
                scope["path"],
                time.perf_counter() - started,
            )


class _RouteCapture:
    """Inside FastAPI, after routing: passes the matched route's template to the exchange."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._templates: dict[str, str] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            exchange = scope.get(SCOPE_KEY)
            route = scope.get("route")
            if exchange is not None and exchange.route is None and route is not None:
                exchange.route = self._template(getattr(route, "path", None))

    def _template(self, path: str | None) -> str:
        if not path:
            return OTHER
        template = self._templates.get(path)
        if template is None:
            template = self._templates[path] = template_of(path)
        return template


def install(app: FastAPI, outer: ASGIApp) -> ASGIApp:
    """Returns ``outer`` (the whole middleware stack around ``app``) wrapped in the metrics
    middleware, and makes ``app`` report its routes and serve its metrics on ``/metrics``
    (kept in ``app.state.http_metrics``)."""
    metrics = HttpMetrics()
    app.state.http_metrics = metrics
    app.add_middleware(_RouteCapture)
    return HttpMetricsMiddleware(outer, metrics)


def exposition(http: HttpMetrics | None, others: Iterable[Collector] = ()) -> bytes:
    """The Prometheus text of ``http``'s series (every process's, in multiprocess mode) and
    of ``others`` (collected per scrape, such as figures read from the database)."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory is not None:
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    elif http is not None:
        for collector in http.collectors():
            registry.register(collector)
    for collector in others:
        registry.register(collector)
    return generate_latest(registry)
