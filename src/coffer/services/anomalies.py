"""Anomaly detection on the sealed audit log.

The detector reads the feed after its cursor (``anomalies``) and looks at every successful
``secret.read`` by an identity in a production environment (COFFER_PRODUCTION_ENVIRONMENTS).
It records ``anomaly.detected`` (actor ``system``, in the read's organization, project,
environment and key) for each of these findings, with ``metadata.reason``:

- ``new_address``: the identity read from a source address it has never read from, while it
  has read from another before (an identity's very first read only records its address);
- ``outside_working_hours``: the organization sets working hours and the read falls outside;
- ``read_burst``: the identity's reads in one fixed window (COFFER_ANOMALY_READ_BURST, such as
  ``100/minute``: windows start at multiples of the window length in Unix time) exceed the
  limit; it fires once per identity and window, on the first read over the limit.

The metadata also names the read (``entry_id``), ``actor_id``, ``actor_kind``, ``source_ip``
and the finding's details. Findings and the cursor's move commit together, and the counts
come from the log itself, so a restart neither repeats nor misses a finding. Webhooks that
subscribe to ``anomaly.detected`` receive the entries like any other.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.records import Record
from coffer.audit.writer import AuditWriter, Metadata
from coffer.domain.errors import InvalidInput
from coffer.domain.events import Event
from coffer.domain.working_hours import WorkingHours, parse_working_hours
from coffer.services.audit import AuditService
from coffer.services.throttle import parse_rate
from coffer.storage import audit_store, webhook_store

CURSOR = "anomalies"
NEW_ADDRESS = "new_address"
OUTSIDE_WORKING_HOURS = "outside_working_hours"
READ_BURST = "read_burst"
BURST_VARIABLE = "COFFER_ANOMALY_READ_BURST"


@dataclass(frozen=True)
class BurstRule:
    """More than ``limit`` reads in one window of ``window_seconds`` is a burst."""

    limit: int
    window_seconds: int


def burst_rule(text: str) -> BurstRule | None:
    """Returns the rule ``text`` sets (``100/minute``, ``500 per 10 minutes``), or None for
    ``off``. Raises ConfigError naming COFFER_ANOMALY_READ_BURST."""
    item = parse_rate(text, variable=BURST_VARIABLE)
    return None if item is None else BurstRule(int(item.amount), int(item.get_expiry()))


@dataclass
class _Batch:
    """What one step learns as it goes: addresses per identity, read counts per window,
    working hours per organization."""

    addresses: dict[str, set[str]]
    counts: dict[tuple[str, float], int]
    hours: dict[str, WorkingHours]


class AnomalyDetector:
    """Flags unusual production reads (one job step = one batch of the feed)."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditService,
        writer: AuditWriter,
        *,
        production_environments: Sequence[str],
        burst: BurstRule | None,
        batch: int = 500,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._writer = writer
        self._environments = tuple(production_environments)
        self._burst = burst
        self._batch = batch

    def step(self) -> bool:
        """Examines the next batch of sealed entries; returns True when a full batch was
        taken (more may be waiting)."""
        with self._engine.connect() as conn:
            position = audit_store.cursor_position(conn, CURSOR)
            start = position or 0
            stop = min(start + self._batch, audit_store.read_tree(conn).size)
        if stop <= start:
            return False
        # Only production reads can be anomalies: the database picks them out of the batch.
        candidates = self._audit.read_range(
            start, stop, action=Event.SECRET_READ.value, environments=self._environments
        )
        reads = [record for record in candidates if self._watched(record)]
        now = time.time()
        with self._engine.begin() as conn:
            if not webhook_store.advance_cursor(conn, CURSOR, position, stop, now):
                return False
            batch = _Batch({}, {}, _hours(conn, {str(r["org"]) for r in reads}))
            for read in reads:
                for reason, details in self._findings(conn, read, batch, now):
                    self._record(conn, read, reason, details)
        return stop - start == self._batch

    def _watched(self, record: Record) -> bool:
        return (
            record["action"] == Event.SECRET_READ.value
            and record["result"] == "success"
            and record["environment"] in self._environments
            and record["actor"]["id"] is not None
            and record["org"] is not None
        )

    def _findings(
        self, conn: sa.Connection, read: Record, batch: _Batch, now: float
    ) -> list[tuple[str, dict[str, Any]]]:
        found: list[tuple[str, dict[str, Any]]] = []
        actor_id: str = read["actor"]["id"]
        at = float(read["time"])
        source_ip = read["source_ip"]
        if source_ip:
            known = batch.addresses.get(actor_id)
            if known is None:
                known = batch.addresses[actor_id] = webhook_store.seen_addresses(conn, actor_id)
            if source_ip not in known:
                if known:
                    found.append((NEW_ADDRESS, {"known_addresses": len(known)}))
                webhook_store.remember_address(conn, actor_id, source_ip, now)
                known.add(source_ip)
        hours = batch.hours.get(str(read["org"]))
        if hours is not None and not hours.contains(at):
            found.append(
                (
                    OUTSIDE_WORKING_HOURS,
                    {"working_hours": str(hours), "local_time": hours.local_time(at)},
                )
            )
        if self._burst is not None:
            burst = self._count(conn, read, batch, self._burst)
            if burst is not None:
                found.append((READ_BURST, burst))
        return found

    def _count(
        self, conn: sa.Connection, read: Record, batch: _Batch, rule: BurstRule
    ) -> dict[str, Any] | None:
        """Counts the read in its window; returns the finding's details when it is the
        first read over the limit."""
        actor_id: str = read["actor"]["id"]
        start = math.floor(float(read["time"]) / rule.window_seconds) * rule.window_seconds
        key = (actor_id, float(start))
        if key not in batch.counts:
            batch.counts[key] = webhook_store.count_reads(
                conn,
                actor_id,
                since=start,
                before_index=int(read["index"]),
                environments=self._environments,
            )
        batch.counts[key] += 1
        if batch.counts[key] != rule.limit + 1:
            return None
        return {
            "reads": rule.limit + 1,
            "limit": rule.limit,
            "window_seconds": rule.window_seconds,
            "window_start": start,
        }

    def _record(
        self, conn: sa.Connection, read: Record, reason: str, details: dict[str, Any]
    ) -> None:
        metadata: Metadata = {
            "reason": reason,
            "entry_id": read["id"],
            "actor_id": read["actor"]["id"],
            "actor_kind": read["actor"]["kind"],
            "source_ip": read["source_ip"],
            **details,
        }
        self._writer.append(
            conn,
            None,
            Event.ANOMALY_DETECTED,
            project=read["project"],
            environment=read["environment"],
            key=read["key"],
            org_id=read["org"],
            metadata=metadata,
        )


def _hours(conn: sa.Connection, org_ids: set[str]) -> dict[str, WorkingHours]:
    """The parsed working hours of those organizations that set valid ones."""
    parsed: dict[str, WorkingHours] = {}
    for org_id, text in webhook_store.working_hours(conn, org_ids).items():
        try:
            parsed[org_id] = parse_working_hours(text)
        except InvalidInput:
            continue  # stored by hand or by an older version: no hours, rather than a halt
    return parsed
