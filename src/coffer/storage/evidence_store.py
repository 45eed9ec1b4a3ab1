"""The reads an evidence pack needs for a period (``domain.evidence``): versions written,
rotator runs, requests and approvals, reviews with their items, offboardings, key rotations,
membership changes, and audit counts per week. Names, ids and times only, never a value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from coffer.domain.events import Event
from coffer.domain.evidence import WEEK
from coffer.storage.compliance_tables import (
    access_requests,
    access_review_items,
    access_reviews,
    offboardings,
    operation_approvals,
)
from coffer.storage.tables import (
    audit_log,
    data_keys,
    environments,
    projects,
    secret_versions,
    secrets,
)

MEMBERSHIP_ACTIONS = (
    Event.MEMBER_JOINED,
    Event.ROLE_CHANGED,
    Event.OWNERSHIP_TRANSFERRED,
    Event.MEMBER_REMOVED,
    Event.MEMBER_OFFBOARDED,
)
KEY_ACTIONS = (Event.KEY_ROTATED, Event.ROOT_KEY_ROTATED)


def _within(column: Any, start: float, end: float) -> sa.ColumnElement[bool]:
    return sa.and_(column >= start, column < end)


def _rows(conn: sa.Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row) for row in conn.execute(query).mappings()]


def versions_in(conn: sa.Connection, org_id: str, start: float, end: float) -> list[dict[str, Any]]:
    """Returns the secret versions written in the period (project, environment, key,
    version, author_id, author_kind, created_at), oldest first."""
    query = (
        sa.select(
            projects.c.name.label("project"),
            environments.c.name.label("environment"),
            secrets.c.key,
            secret_versions.c.version,
            secret_versions.c.author_id,
            secret_versions.c.author_kind,
            secret_versions.c.created_at,
        )
        .select_from(
            secret_versions.join(secrets, secrets.c.id == secret_versions.c.secret_id)
            .join(environments, environments.c.id == secrets.c.environment_id)
            .join(projects, projects.c.id == environments.c.project_id)
        )
        .where(projects.c.org_id == org_id, _within(secret_versions.c.created_at, start, end))
        .order_by(secret_versions.c.created_at, secrets.c.key, secret_versions.c.version)
    )
    return _rows(conn, query)


def audit_entries(
    conn: sa.Connection,
    org_id: str,
    actions: Sequence[str],
    *,
    start: float | None = None,
    end: float | None = None,
    system_too: bool = False,
) -> list[dict[str, Any]]:
    """Returns the organization's audit entries of ``actions`` (with the vault's own,
    ``system_too``), in the period when given, oldest first: timestamp, action, actor_id,
    actor_kind, project, environment, key, result, metadata."""
    owner = audit_log.c.org_id == org_id
    if system_too:
        owner = sa.or_(owner, audit_log.c.org_id.is_(None))
    query = sa.select(
        audit_log.c.timestamp,
        audit_log.c.action,
        audit_log.c.actor_id,
        audit_log.c.actor_kind,
        audit_log.c.project,
        audit_log.c.environment,
        audit_log.c.key,
        audit_log.c.result,
        audit_log.c.metadata,
    ).where(owner, audit_log.c.action.in_([str(a) for a in actions]))
    if start is not None:
        query = query.where(audit_log.c.timestamp >= start)
    if end is not None:
        query = query.where(audit_log.c.timestamp < end)
    return _rows(conn, query.order_by(audit_log.c.seq))


def requests_in(conn: sa.Connection, org_id: str, start: float, end: float) -> list[dict[str, Any]]:
    """Returns the access requests made or decided in the period, oldest first."""
    query = (
        sa.select(access_requests)
        .where(
            access_requests.c.org_id == org_id,
            sa.or_(
                _within(access_requests.c.created_at, start, end),
                _within(access_requests.c.decided_at, start, end),
            ),
        )
        .order_by(access_requests.c.created_at, access_requests.c.id)
    )
    return _rows(conn, query)


def approvals_in(
    conn: sa.Connection, org_id: str, start: float, end: float
) -> list[dict[str, Any]]:
    """Returns the separated-duty approvals asked for or decided in the period."""
    query = (
        sa.select(operation_approvals)
        .where(
            operation_approvals.c.org_id == org_id,
            sa.or_(
                _within(operation_approvals.c.created_at, start, end),
                _within(operation_approvals.c.decided_at, start, end),
            ),
        )
        .order_by(operation_approvals.c.created_at, operation_approvals.c.id)
    )
    return _rows(conn, query)


def reviews_in(conn: sa.Connection, org_id: str, start: float, end: float) -> list[dict[str, Any]]:
    """Returns the access reviews started or signed off in the period, each with its
    ``items`` (every identity line with its decision), oldest first."""
    reviews = _rows(
        conn,
        sa.select(access_reviews)
        .where(
            access_reviews.c.org_id == org_id,
            sa.or_(
                _within(access_reviews.c.created_at, start, end),
                _within(access_reviews.c.signed_off_at, start, end),
            ),
        )
        .order_by(access_reviews.c.created_at, access_reviews.c.id),
    )
    if not reviews:
        return []
    items = _rows(
        conn,
        sa.select(access_review_items)
        .where(access_review_items.c.review_id.in_([r["id"] for r in reviews]))
        .order_by(access_review_items.c.identity_kind, access_review_items.c.identity_name),
    )
    for review in reviews:
        review["items"] = [item for item in items if item["review_id"] == review["id"]]
    return reviews


def requests_by_grant(conn: sa.Connection, org_id: str) -> dict[str, str]:
    """Maps each grant an approved access request created to that request's id."""
    rows = conn.execute(
        sa.select(access_requests.c.grant_id, access_requests.c.id).where(
            access_requests.c.org_id == org_id, access_requests.c.grant_id.is_not(None)
        )
    )
    return {str(grant_id): str(request_id) for grant_id, request_id in rows}


def offboardings_all(conn: sa.Connection, org_id: str) -> list[dict[str, Any]]:
    """Returns every offboarding of the organization, oldest first."""
    query = (
        sa.select(offboardings)
        .where(offboardings.c.org_id == org_id)
        .order_by(offboardings.c.offboarded_at, offboardings.c.id)
    )
    return _rows(conn, query)


def data_key_versions(conn: sa.Connection, org_id: str) -> list[dict[str, Any]]:
    """Returns every stored data key version (project, version, created_at; never a key)."""
    query = (
        sa.select(
            projects.c.name.label("project"),
            data_keys.c.version,
            data_keys.c.created_at,
            projects.c.key_version.label("current_version"),
        )
        .select_from(data_keys.join(projects, projects.c.id == data_keys.c.project_id))
        .where(projects.c.org_id == org_id)
        .order_by(projects.c.name, data_keys.c.version)
    )
    return _rows(conn, query)


def audit_week_counts(
    conn: sa.Connection, org_id: str, start: float, end: float
) -> list[tuple[int, str, int]]:
    """Returns how many of the organization's audit entries each action has in each 7-day
    bucket from ``start`` (``(week, action, count)``), counted by the database."""
    offset = (audit_log.c.timestamp - start) / WEEK
    # PostgreSQL rounds a cast to integer; SQLite truncates, which for these non-negative
    # offsets is the floor.
    week: Any = (
        sa.cast(sa.func.floor(offset), sa.Integer)
        if conn.dialect.name == "postgresql"
        else sa.cast(offset, sa.Integer)
    )
    rows = conn.execute(
        sa.select(week, audit_log.c.action, sa.func.count())
        .where(audit_log.c.org_id == org_id, _within(audit_log.c.timestamp, start, end))
        .group_by(week, audit_log.c.action)
    )
    return [(int(w), str(action), int(count)) for w, action, count in rows]


def oldest_audit_entry(conn: sa.Connection) -> float | None:
    """Returns when the oldest entry still in the log was written (None: the log is empty)."""
    value = conn.execute(sa.select(sa.func.min(audit_log.c.timestamp))).scalar_one()
    return None if value is None else float(value)
