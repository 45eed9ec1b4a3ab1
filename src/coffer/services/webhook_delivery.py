"""Webhook delivery in the background: a dispatcher turns sealed audit entries into pending
deliveries, and a sender makes the requests, retrying with exponential backoff.

The sealed log is the spool. The dispatcher reads the feed after its cursor (``webhooks``)
and, in one transaction, stores a pending delivery for each entry and each active webhook
that wants it, and moves the cursor past the batch; a crash between the two cannot lose or
double an entry. A webhook wants an entry of its organization (and of its project, when it
has one) whose action matches one of its patterns and that was written after the webhook
was created; a ``webhook.*`` entry about a webhook itself (its test ping, its own failure)
is not sent to it.

The sender claims due deliveries, sends them with no database connection held, and records
each outcome. Delivered: state ``delivered`` with the status code and latency. Failed (non-2xx,
3xx included, timeout, connection error, refused by the SSRF guard): attempt ``n`` is
retried ``min(base * 2**n, cap)`` seconds later; after ``max_attempts`` the delivery is
``failed`` and ``webhook.failed`` is recorded. A failure also postpones that webhook's other
due deliveries to the same time, so a dead endpoint costs one request per retry and does not
hold up the deliveries of other webhooks. Requests never wait for any of this.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.records import RECORD_WIDTH, Record, record_from_values
from coffer.audit.writer import AuditWriter
from coffer.domain.events import Event, Result, event_pattern_matches
from coffer.services.audit import AuditService
from coffer.services.webhooks import WebhookService, payload
from coffer.storage import audit_store, webhook_store
from coffer.storage.ids import new_id
from coffer.storage.webhook_store import DELIVERED, FAILED, PENDING, DeliveryRow, WebhookRow

CURSOR = "webhooks"
MAX_ATTEMPTS = 8


def wants(hook: WebhookRow, record: Record) -> bool:
    """True when ``hook`` should receive ``record`` (see the module docstring)."""
    if record["org"] != hook.org_id or float(record["time"]) < hook.created_at:
        return False
    if hook.project is not None and record["project"] != hook.project:
        return False
    action = str(record["action"])
    metadata = record.get("metadata") or {}
    if action.startswith("webhook.") and metadata.get("webhook_id") == hook.id:
        return False
    return any(event_pattern_matches(pattern, action) for pattern in hook.events)


class WebhookDispatcher:
    """Creates pending deliveries from the sealed log (one job step = one batch)."""

    def __init__(self, engine: Engine, audit: AuditService, *, batch: int = 500) -> None:
        self._engine = engine
        self._audit = audit
        self._batch = batch

    def step(self) -> bool:
        """Dispatches the next batch of sealed entries; returns True when a full batch was
        taken (more may be waiting)."""
        with self._engine.connect() as conn:
            position = audit_store.cursor_position(conn, CURSOR)
            listening = bool(webhook_store.active_webhooks(conn))
            sealed = audit_store.read_tree(conn).size
        if not listening:
            # Nobody to notify: move past what is sealed without reading it (webhooks
            # concern what happens after they exist).
            if sealed > (position or 0):
                with self._engine.begin() as conn:
                    webhook_store.advance_cursor(conn, CURSOR, position, sealed, time.time())
            return False
        records = self._audit.read_after(position or 0, self._batch)
        if not records:
            return False
        now = time.time()
        with self._engine.begin() as conn:
            if not webhook_store.advance_cursor(
                conn, CURSOR, position, int(records[-1]["index"]) + 1, now
            ):
                return False
            hooks = webhook_store.active_webhooks(conn)
            webhook_store.insert_deliveries(
                conn,
                [
                    _pending(hook, record, now)
                    for record in records
                    for hook in hooks
                    if wants(hook, record)
                ],
            )
        return len(records) == self._batch


def _pending(hook: WebhookRow, record: Record, now: float) -> dict[str, Any]:
    return {
        "id": new_id(),
        "webhook_id": hook.id,
        "entry_id": record["id"],
        "leaf_index": record["index"],
        "event": record["action"],
        "state": PENDING,
        "attempts": 0,
        "status_code": None,
        "latency_ms": None,
        "error": None,
        "created_at": now,
        "next_attempt_at": now,
        "delivered_at": None,
    }


class WebhookSender:
    """Sends due deliveries (one job step = one claimed batch), up to ``workers`` webhooks
    at a time and each webhook's deliveries in order. ``lease_seconds`` is how long a
    claimed delivery stays hidden from other servers (it is retried then if this one died)."""

    def __init__(
        self,
        engine: Engine,
        webhooks: WebhookService,
        audit: AuditWriter,
        *,
        batch: int = 100,
        workers: int = 4,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base: float = 15.0,
        backoff_cap: float = 3600.0,
        lease_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._webhooks = webhooks
        self._audit = audit
        self._batch = batch
        self._workers = workers
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._lease_seconds = lease_seconds
        self._clock = clock

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self._backoff_base * 2.0**attempts, self._backoff_cap))

    def step(self) -> bool:
        """Claims and sends due deliveries; returns True when a full batch was claimed."""
        now = self._clock()
        with self._engine.connect() as conn:
            if not webhook_store.any_due(conn, now):
                return False  # no write transaction (on SQLite, no write lock) when idle
        with self._engine.begin() as conn:
            claimed = webhook_store.claim_due(conn, now, self._batch, now + self._lease_seconds)
            hooks = {
                row.id: row
                for row in (
                    webhook_store.find_webhook(conn, hook_id)
                    for hook_id in {d.webhook_id for d in claimed}
                )
                if row is not None
            }
            records = {d.entry_id: _record(conn, d.entry_id) for d in claimed}
        groups: dict[str, list[DeliveryRow]] = {}
        for delivery in claimed:
            if delivery.webhook_id in hooks:
                groups.setdefault(delivery.webhook_id, []).append(delivery)
        if groups:
            with ThreadPoolExecutor(max_workers=min(self._workers, len(groups))) as pool:
                futures = [
                    pool.submit(self._send_group, hooks[hook_id], group, records)
                    for hook_id, group in groups.items()
                ]
                for future in futures:
                    future.result()
        return len(claimed) == self._batch

    def _send_group(
        self, hook: WebhookRow, group: list[DeliveryRow], records: dict[str, Record | None]
    ) -> None:
        secret = self._webhooks.secret_of(hook)
        for position, delivery in enumerate(group):
            record = records.get(delivery.entry_id)
            if record is None:
                self._finish(hook, delivery, False, None, None, "the entry was pruned", final=True)
                continue
            body = payload(delivery.id, delivery.event, delivery.created_at, record)
            outcome = self._webhooks.poster.post(
                hook.url, secret, delivery_id=delivery.id, event=delivery.event, body=body
            )
            self._finish(
                hook,
                delivery,
                outcome.delivered,
                outcome.status_code,
                outcome.latency_ms,
                outcome.error,
                untried=[d.id for d in group[position + 1 :]],
            )
            if not outcome.delivered:
                return

    def _finish(
        self,
        hook: WebhookRow,
        delivery: DeliveryRow,
        delivered: bool,
        status_code: int | None,
        latency_ms: float | None,
        error: str | None,
        *,
        untried: list[str] | None = None,
        final: bool = False,
    ) -> None:
        now = self._clock()
        attempts = delivery.attempts + 1
        values: dict[str, Any] = {
            "attempts": attempts,
            "status_code": status_code,
            "latency_ms": latency_ms,
            "error": error,
        }
        retry_at = now + self.backoff(attempts)
        if delivered:
            values.update(state=DELIVERED, delivered_at=now)
        elif final or attempts >= self._max_attempts:
            values.update(state=FAILED)
        else:
            values.update(next_attempt_at=retry_at)
        with self._engine.begin() as conn:
            webhook_store.update_delivery(conn, delivery.id, **values)
            if delivered:
                return
            webhook_store.postpone_pending(conn, hook.id, delivery.id, untried or [], retry_at)
            if values.get("state") == FAILED:
                self._audit.append(
                    conn,
                    None,
                    Event.WEBHOOK_FAILED,
                    project=hook.project,
                    result=Result.FAILURE,
                    org_id=hook.org_id,
                    metadata={
                        "webhook_id": hook.id,
                        "delivery_id": delivery.id,
                        "entry_id": delivery.entry_id,
                        "event": delivery.event,
                        "attempts": attempts,
                        "status_code": status_code,
                        "error": error,
                    },
                )


def _record(conn: sa.Connection, entry_id: str) -> Record | None:
    values = audit_store.row_by_id(conn, entry_id)
    return None if values is None else record_from_values(values[:RECORD_WIDTH])
