"""``/metrics``: Prometheus text about the audit log and its consumers, built per scrape from
the database. Unauthenticated and numbers only: no names of organizations, projects, keys or
people (a consumer label is ``webhooks``, ``anomalies`` or a stream's
``stream:<scheme>://<host>:<port>``)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from coffer.api.context import Run, ServicesDep
from coffer.services.audit_streams import LogStatus

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


@router.get("/metrics", include_in_schema=False)
async def metrics(services: ServicesDep, run: Run) -> Response:
    """Prometheus exposition of the audit log's backlog and webhook deliveries."""
    status = await run(services.consumers.status)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_LogCollector(status))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
