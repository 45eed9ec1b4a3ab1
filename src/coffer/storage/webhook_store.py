"""Queries for the consumers of the sealed audit log: webhooks and their deliveries, the
consumers' cursors (compare-and-set, so that two servers never both take one batch), and
what the anomaly detector remembers (addresses seen, reads counted, working hours)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from coffer.storage.tables import (
    audit_cursors,
    audit_log,
    audit_seen_addresses,
    organizations,
    webhook_deliveries,
    webhooks,
)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
DELIVERY_STATES = (PENDING, DELIVERED, FAILED)
_ERROR_CHARS = 300


@dataclass(frozen=True)
class WebhookRow:
    """A stored webhook. ``secret_sealed`` is the signing secret sealed under the
    key-encryption key (never shown, and masked in ``repr``)."""

    id: str
    org_id: str
    project: str | None
    url: str
    events: tuple[str, ...]
    description: str | None
    created_at: float
    created_by: str | None
    secret_sealed: bytes = field(repr=False)


@dataclass(frozen=True)
class DeliveryRow:
    """One delivery of one audit entry to one webhook, and how it went so far."""

    id: str
    webhook_id: str
    entry_id: str
    leaf_index: int
    event: str
    state: str
    attempts: int
    status_code: int | None
    latency_ms: float | None
    error: str | None
    created_at: float
    next_attempt_at: float
    delivered_at: float | None


_WEBHOOK_COLUMNS = (
    webhooks.c.id,
    webhooks.c.org_id,
    webhooks.c.project,
    webhooks.c.url,
    webhooks.c.events,
    webhooks.c.description,
    webhooks.c.created_at,
    webhooks.c.created_by,
    webhooks.c.secret_sealed,
)
_DELIVERY_COLUMNS = tuple(webhook_deliveries.c[name] for name in DeliveryRow.__dataclass_fields__)


def _webhook(row: Sequence[Any]) -> WebhookRow:
    return WebhookRow(
        id=row[0],
        org_id=row[1],
        project=row[2],
        url=row[3],
        events=tuple(row[4]),
        description=row[5],
        created_at=float(row[6]),
        created_by=row[7],
        secret_sealed=bytes(row[8]),
    )


def insert_webhook(conn: sa.Connection, row: WebhookRow) -> None:
    """Stores a new, active webhook."""
    conn.execute(
        sa.insert(webhooks).values(
            id=row.id,
            org_id=row.org_id,
            project=row.project,
            url=row.url,
            events=list(row.events),
            secret_sealed=row.secret_sealed,
            description=row.description,
            created_at=row.created_at,
            created_by=row.created_by,
            active=True,
        )
    )


def list_webhooks(conn: sa.Connection, org_id: str) -> list[WebhookRow]:
    """Returns the organization's active webhooks, oldest first."""
    rows = conn.execute(
        sa.select(*_WEBHOOK_COLUMNS)
        .where(webhooks.c.org_id == org_id, webhooks.c.active.is_(True))
        .order_by(webhooks.c.created_at, webhooks.c.id)
    )
    return [_webhook(row) for row in rows]


def active_webhooks(conn: sa.Connection) -> list[WebhookRow]:
    """Returns every organization's active webhooks."""
    rows = conn.execute(sa.select(*_WEBHOOK_COLUMNS).where(webhooks.c.active.is_(True)))
    return [_webhook(row) for row in rows]


def find_webhook(
    conn: sa.Connection, webhook_id: str, org_id: str | None = None
) -> WebhookRow | None:
    """Returns the active webhook ``webhook_id`` (of ``org_id`` when given), or None."""
    query = sa.select(*_WEBHOOK_COLUMNS).where(
        webhooks.c.id == webhook_id, webhooks.c.active.is_(True)
    )
    if org_id is not None:
        query = query.where(webhooks.c.org_id == org_id)
    row = conn.execute(query).first()
    return _webhook(row) if row is not None else None


def delete_webhook(conn: sa.Connection, webhook_id: str) -> None:
    """Deletes a webhook with its delivery log and sealed secret."""
    conn.execute(sa.delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == webhook_id))
    conn.execute(sa.delete(webhooks).where(webhooks.c.id == webhook_id))


def insert_deliveries(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Stores new pending deliveries (dicts with every ``DeliveryRow`` field)."""
    if rows:
        conn.execute(sa.insert(webhook_deliveries), rows)


def any_due(conn: sa.Connection, now: float) -> bool:
    """True when some pending delivery is due by ``now`` (a read, no lock)."""
    return (
        conn.execute(
            sa.select(webhook_deliveries.c.id)
            .where(
                webhook_deliveries.c.state == PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .limit(1)
        ).first()
        is not None
    )


def claim_due(conn: sa.Connection, now: float, limit: int, lease_until: float) -> list[DeliveryRow]:
    """Takes up to ``limit`` pending deliveries due by ``now``, soonest first, and moves
    their next attempt to ``lease_until`` so that no other server takes them meanwhile (if
    this one dies, they become due again then). Rows another transaction holds are skipped."""
    rows = [
        DeliveryRow(*row)
        for row in conn.execute(
            sa.select(*_DELIVERY_COLUMNS)
            .where(
                webhook_deliveries.c.state == PENDING,
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at, webhook_deliveries.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ]
    if rows:
        conn.execute(
            sa.update(webhook_deliveries)
            .where(webhook_deliveries.c.id.in_([row.id for row in rows]))
            .values(next_attempt_at=lease_until)
        )
    return rows


def update_delivery(conn: sa.Connection, delivery_id: str, **values: Any) -> None:
    """Records the outcome of an attempt (``state``, ``attempts``, ``status_code``, ...)."""
    if isinstance(values.get("error"), str):
        values["error"] = values["error"][:_ERROR_CHARS]
    conn.execute(
        sa.update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(**values)
    )


def postpone_pending(
    conn: sa.Connection, webhook_id: str, tried: str, untried: list[str], until: float
) -> None:
    """Moves the webhook's pending deliveries other than ``tried`` that are due before
    ``until``, and those in ``untried`` (claimed but not sent), to ``until``: its endpoint
    is failing, so they wait for its next retry instead of each trying now."""
    due = webhook_deliveries.c.next_attempt_at < until
    if untried:
        due = sa.or_(due, webhook_deliveries.c.id.in_(untried))
    conn.execute(
        sa.update(webhook_deliveries)
        .where(
            webhook_deliveries.c.webhook_id == webhook_id,
            webhook_deliveries.c.state == PENDING,
            webhook_deliveries.c.id != tried,
            due,
        )
        .values(next_attempt_at=until)
    )


def list_deliveries(conn: sa.Connection, webhook_id: str, limit: int) -> list[DeliveryRow]:
    """Returns the webhook's latest ``limit`` deliveries, newest first."""
    return [
        DeliveryRow(*row)
        for row in conn.execute(
            sa.select(*_DELIVERY_COLUMNS)
            .where(webhook_deliveries.c.webhook_id == webhook_id)
            .order_by(webhook_deliveries.c.created_at.desc(), webhook_deliveries.c.id.desc())
            .limit(limit)
        )
    ]


def delivery_counts(conn: sa.Connection) -> dict[str, int]:
    """Returns how many deliveries are in each state (every state present, 0 if none)."""
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    for state, count in conn.execute(
        sa.select(webhook_deliveries.c.state, sa.func.count()).group_by(webhook_deliveries.c.state)
    ):
        counts[str(state)] = int(count)
    return counts


def advance_cursor(
    conn: sa.Connection, name: str, expected: int | None, position: int, now: float
) -> bool:
    """Moves consumer ``name`` from ``expected`` (None: it never ran) to ``position`` and
    clears its last error; returns False, changing nothing, when the cursor is no longer at
    ``expected`` (another server took the batch). Call first in the transaction that stores
    what the batch produced, so both commit together."""
    if expected is None:
        exists = conn.execute(
            sa.select(audit_cursors.c.name).where(audit_cursors.c.name == name)
        ).first()
        if exists is not None:
            return False
        conn.execute(
            sa.insert(audit_cursors).values(
                name=name, position=position, updated_at=now, last_error=None
            )
        )
        return True
    updated = conn.execute(
        sa.update(audit_cursors)
        .where(audit_cursors.c.name == name, audit_cursors.c.position == expected)
        .values(position=position, updated_at=now, last_error=None)
    )
    return bool(updated.rowcount)


def note_cursor_error(
    conn: sa.Connection, name: str, position: int, error: str, now: float
) -> None:
    """Records consumer ``name``'s last error, leaving its position alone (a cursor that
    does not exist yet is created at ``position``)."""
    updated = conn.execute(
        sa.update(audit_cursors)
        .where(audit_cursors.c.name == name)
        .values(last_error=error[:_ERROR_CHARS], updated_at=now)
    )
    if not updated.rowcount:
        conn.execute(
            sa.insert(audit_cursors).values(
                name=name, position=position, updated_at=now, last_error=error[:_ERROR_CHARS]
            )
        )


def seen_addresses(conn: sa.Connection, actor_id: str) -> set[str]:
    """Returns the source addresses identity ``actor_id`` has been seen reading from."""
    return {
        str(ip)
        for ip in conn.execute(
            sa.select(audit_seen_addresses.c.source_ip).where(
                audit_seen_addresses.c.actor_id == actor_id
            )
        ).scalars()
    }


def remember_address(conn: sa.Connection, actor_id: str, source_ip: str, now: float) -> None:
    """Records that ``actor_id`` read from ``source_ip`` (not yet recorded)."""
    conn.execute(
        sa.insert(audit_seen_addresses).values(
            actor_id=actor_id, source_ip=source_ip, first_seen=now
        )
    )


def count_reads(
    conn: sa.Connection,
    actor_id: str,
    *,
    since: float,
    before_index: int,
    environments: Iterable[str],
) -> int:
    """Returns how many successful sealed reads ``actor_id`` made in ``environments`` from
    ``since`` on, among the entries before leaf index ``before_index``."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                audit_log.c.actor_id == actor_id,
                audit_log.c.timestamp >= since,
                audit_log.c.action == "secret.read",
                audit_log.c.result == "success",
                audit_log.c.environment.in_(list(environments)),
                audit_log.c.leaf_index < before_index,
            )
        ).scalar_one()
    )


def working_hours(conn: sa.Connection, org_ids: Iterable[str]) -> dict[str, str]:
    """Returns the working-hours text of those of ``org_ids`` that set one."""
    wanted = sorted(set(org_ids))
    if not wanted:
        return {}
    return {
        str(org_id): str(text)
        for org_id, text in conn.execute(
            sa.select(organizations.c.id, organizations.c.working_hours).where(
                organizations.c.id.in_(wanted), organizations.c.working_hours.is_not(None)
            )
        )
    }
