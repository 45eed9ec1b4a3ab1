"""``/metrics``: Prometheus text. The HTTP series (latency per route template, secret reads
and writes, rate-limit rejections; see ``coffer.api.http_metrics``, which also explains
multiprocess mode) and, read from the database per scrape, the audit log and its consumers
and the keys: the active root-key generation, project key rotations under way and the secret
versions they still have to re-encrypt. Unauthenticated and numbers only: no names of
organizations, projects, keys or people (a consumer label is ``webhooks``, ``anomalies`` or
a stream's ``stream:<scheme>://<host>:<port>``)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from coffer.api.context import Run, ServicesDep
from coffer.api.http_metrics import exposition
from coffer.services.audit_streams import LogStatus
from coffer.services.container import Services
from coffer.services.readiness import KeyProgress

router = APIRouter(tags=["system"])


class _LogCollector(Collector):
    """Turns one ``LogStatus`` into gauges."""

    def __init__(self, status: LogStatus) -> None:
        self._status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        status = self._status
        yield GaugeMetricFamily(
            "coffer_audit_entries_sealed",
            "Audit entries placed in the Merkle tree (the tree size).",
            value=status.sealed,
        )
        yield GaugeMetricFamily(
            "coffer_audit_unsealed_entries",
            "Audit entries written but not yet placed in the tree.",
            value=status.unsealed,
        )
        backlog = GaugeMetricFamily(
            "coffer_audit_consumer_backlog",
            "Sealed audit entries a consumer (stream, webhooks, anomalies) has not taken yet.",
            labels=["consumer"],
        )
        errors = GaugeMetricFamily(
            "coffer_audit_consumer_errors",
            "1 when the consumer's last attempt failed, else 0.",
            labels=["consumer"],
        )
        for name, consumer in sorted(status.consumers.items()):
            backlog.add_metric([name], consumer.backlog)
            errors.add_metric([name], 1 if consumer.failing else 0)
        yield backlog
        yield errors
        deliveries = GaugeMetricFamily(
            "coffer_webhook_deliveries",
            "Webhook deliveries by state.",
            labels=["state"],
        )
        for state, count in sorted(status.deliveries.items()):
            deliveries.add_metric([state], count)
        yield deliveries


class _KeyCollector(Collector):
    """Turns one ``KeyProgress`` into gauges (sums over projects, no project labels)."""

    def __init__(self, progress: KeyProgress) -> None:
        self._progress = progress

    def collect(self) -> Iterator[GaugeMetricFamily]:
        progress = self._progress
        yield GaugeMetricFamily(
            "coffer_root_key_generation",
            "The active root-key generation (it grows by one with each root rotation).",
            value=progress.root_key_generation,
        )
        yield GaugeMetricFamily(
            "coffer_key_rotations_in_progress",
            "Projects whose data-key rotation has started and not finished.",
            value=progress.rotations_in_progress,
        )
        yield GaugeMetricFamily(
            "coffer_key_rotation_versions_remaining",
            "Secret versions still under an older data key, summed over rotating projects.",
            value=progress.versions_remaining,
        )


class _NodeCollector(Collector):
    """This node's view of its shared state: whether its caches can be trusted and whether
    its rate limits are counted in Redis."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "coffer_cache_fresh",
            "1 while this node hears every change (its caches are used), 0 while it bypasses "
            "them (no invalidation channel, e.g. Redis down, or caching off).",
            value=1 if self._services.epochs.fresh else 0,
        )
        yield GaugeMetricFamily(
            "coffer_rate_limit_degraded",
            "1 while Redis is unreachable and this node counts rate limits alone.",
            value=1 if self._services.throttle.degraded else 0,
        )


def _vault_figures(services: Services) -> tuple[LogStatus, KeyProgress]:
    return services.consumers.status(), services.readiness.key_progress()


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, services: ServicesDep, run: Run) -> Response:
    """Prometheus exposition of the HTTP series, the audit log's backlog, webhook
    deliveries and key rotation progress."""
    status, keys = await run(_vault_figures, services)
    http = getattr(request.app.state, "http_metrics", None)
    body = exposition(http, (_LogCollector(status), _KeyCollector(keys), _NodeCollector(services)))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
