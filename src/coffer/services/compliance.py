"""The SOC 2 control table computed from live state, and the evidence for a period (issue 9,
parts 6 and 7).

Both need the admin role (``audit.view``). Computing the table verifies the whole audit log
(``AuditService.verify``, which records ``audit.verified``); an evidence export records
``compliance.evidence_exported``. Neither ever reads a secret value.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.config import Settings
from coffer.domain.access import Action
from coffer.domain.control_facts import (
    CHECKPOINT_MAX_LAG_SECONDS,
    ControlFacts,
    MonitoringFacts,
)
from coffer.domain.controls import ControlResult, evaluate, summary
from coffer.domain.errors import InvalidQuery
from coffer.domain.events import Event
from coffer.domain.evidence import DAY, EvidencePeriod, iso_time, parse_period
from coffer.domain.models import CallContext
from coffer.services import compliance_facts as facts
from coffer.services import evidence
from coffer.services.access import AccessGate
from coffer.services.audit import AuditService
from coffer.services.compliance_facts import Deployment
from coffer.storage import compliance_access_store, compliance_store
from coffer.storage.database import read_snapshot

STATUS_WINDOW_DAYS = 90


@dataclass(frozen=True)
class ComplianceStatus:
    """The control table as of ``generated_at``, for the period ``start``..``end``."""

    generated_at: float
    organization: str
    start: float
    end: float
    results: list[ControlResult]

    def to_json(self) -> dict[str, Any]:
        """The table as the API answers it."""
        return {
            "generated_at": iso_time(self.generated_at),
            "organization": self.organization,
            "period": {"from": iso_time(self.start), "to": iso_time(self.end)},
            "controls": [result.to_json() for result in self.results],
            "summary": summary(self.results),
        }


class ComplianceService:
    """Computes the control table and the evidence of a period for the caller's
    organization."""

    def __init__(
        self,
        engine: Engine,
        writer: AuditWriter,
        audit: AuditService,
        gate: AccessGate,
        deployment: Deployment | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._audit = audit
        self._gate = gate
        self._deployment = deployment or Deployment()
        self._clock = clock

    @classmethod
    def for_settings(
        cls,
        engine: Engine,
        writer: AuditWriter,
        audit: AuditService,
        gate: AccessGate,
        settings: Settings,
    ) -> ComplianceService:
        """The service with the deployment facts of ``settings``."""
        return cls(engine, writer, audit, gate, Deployment.from_settings(settings))

    def status(self, ctx: CallContext) -> ComplianceStatus:
        """Returns the control table as of now; the checks about a period look at the last
        ``STATUS_WINDOW_DAYS`` days."""
        self._gate.require(ctx, Action.AUDIT_VIEW)
        now = self._clock()
        return self._status(ctx, now - STATUS_WINDOW_DAYS * DAY, now, now)

    def evidence(self, ctx: CallContext, start_text: object, end_text: object) -> dict[str, Any]:
        """Returns the evidence of the period ``start_text``..``end_text`` (dates or ISO 8601
        times, see ``domain.evidence.parse_period``) as JSON-ready data: the control table as
        of now (its period checks over this period), the inventory, rotation history and
        schedule, requests, approvals, reviews, offboardings, key rotations, people and
        roles at the period's end, the permission matrix, grants, the retention policy and
        chart counts. Records ``compliance.evidence_exported``. Raises InvalidQuery naming
        ``from`` or ``to``."""
        now = self._clock()
        period = parse_period(start_text, end_text, now=now, error=InvalidQuery)
        self._gate.require(ctx, Action.AUDIT_VIEW)
        table = self._status(ctx, period.start, period.data_end(now), now)
        org_id = ctx.actor.org_id
        with read_snapshot(self._engine) as conn:
            body = evidence.build(conn, org_id, period, now, self._deployment)
        body = {
            **table.to_json(),
            "period": _period_json(period, now),
            **body,
        }
        with self._engine.begin() as conn:
            self._writer.append(
                conn,
                ctx,
                Event.COMPLIANCE_EVIDENCE_EXPORTED,
                metadata={
                    "from": period.start_text,
                    "to": period.end_text,
                    "controls_failing": len(body["summary"]["failing_ids"]),
                    "secrets": len(body["inventory"]),
                },
            )
        return body

    def _status(self, ctx: CallContext, start: float, end: float, now: float) -> ComplianceStatus:
        org_id = ctx.actor.org_id
        with self._engine.connect() as conn:
            # Read before verifying: verification signs a fresh checkpoint.
            last_checkpoint, oldest_unsigned = compliance_store.checkpoint_lag(conn)
        report = self._audit.verify(ctx)
        problem = report.first_problem()
        deployment = self._deployment
        with read_snapshot(self._engine) as conn:
            organization, _ = compliance_store.organization(conn, org_id)
            names = compliance_access_store.identity_names(conn, org_id)
            secrets = facts.standings(conn, org_id, now)
            monitoring = MonitoringFacts(
                log_verified=report.ok,
                verify_problem=problem.message if problem else None,
                entries=report.entries,
                last_checkpoint_at=last_checkpoint,
                oldest_unsigned_at=oldest_unsigned,
                active_webhooks=compliance_store.active_webhooks(conn, org_id),
                siem_streams=len(deployment.siem_streams),
                anomaly_environments=deployment.production_environments,
                checkpoint_lag_allowed=max(
                    CHECKPOINT_MAX_LAG_SECONDS, 2.0 * deployment.checkpoint_seconds
                ),
            )
            control_facts = ControlFacts(
                now=now,
                period_start=start,
                period_end=end,
                logical_access=facts.logical_access(conn, org_id),
                authorisation=facts.authorisation(conn, org_id, start, end, now, names),
                removal=facts.removal(conn, org_id, end, now, names),
                external_access=facts.external_access(conn, org_id, now, names),
                data_movement=facts.data_movement(conn, org_id, deployment),
                detection=facts.detection(conn, org_id),
                monitoring=monitoring,
                change=facts.change(conn, org_id, secrets),
            )
        return ComplianceStatus(now, organization, start, end, evaluate(control_facts))


def _period_json(period: EvidencePeriod, now: float) -> dict[str, Any]:
    return {
        "from": period.start_text,
        "to": period.end_text,
        "start": iso_time(period.start),
        "end": iso_time(period.end),
        "data_until": iso_time(period.data_end(now)),
    }
