"""Access requests (``storage.compliance_tables.access_requests``).

Rows keep identity ids; names (e-mail addresses, machine names) are joined in when read, so
a request of someone since removed still lists with their id. ``status`` holds the last
decision; whether a pending or approved request has expired meanwhile is computed when read
(``domain.access_requests.AccessRequest.status_at``), and the status filters here apply the
same rule in SQL.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from coffer.domain.access import AccessLevel
from coffer.domain.access_requests import (
    PENDING_SECONDS,
    AccessRequest,
    Person,
    RequestStatus,
)
from coffer.storage.compliance_tables import access_requests
from coffer.storage.ids import new_id
from coffer.storage.tables import machines, users

_requester_user = users.alias("requester_user")
_requester_machine = machines.alias("requester_machine")
_decider_user = users.alias("decider_user")

_COLUMNS = (
    access_requests,
    sa.func.coalesce(_requester_user.c.email, _requester_machine.c.name).label("requester_name"),
    _decider_user.c.email.label("decider_name"),
)
_FROM = (
    access_requests.outerjoin(
        _requester_user, _requester_user.c.id == access_requests.c.requester_id
    )
    .outerjoin(_requester_machine, _requester_machine.c.id == access_requests.c.requester_id)
    .outerjoin(_decider_user, _decider_user.c.id == access_requests.c.decided_by)
)


def _request(row: Any) -> AccessRequest:
    decided_by = row["decided_by"]
    return AccessRequest(
        id=row["id"],
        org_id=row["org_id"],
        requester=Person(row["requester_id"], row["requester_name"]),
        requester_kind=row["requester_kind"],
        project=row["project"],
        environment=row["environment"],
        access=AccessLevel(row["access"]),
        reason=row["reason"],
        duration_seconds=int(row["duration_seconds"]),
        stored_status=RequestStatus(row["status"]),
        created_at=row["created_at"],
        decided_by=Person(decided_by, row["decider_name"]) if decided_by else None,
        decided_at=row["decided_at"],
        note=row["decision_note"],
        grant_id=row["grant_id"],
        expires_at=row["expires_at"],
    )


def insert_request(
    conn: sa.Connection,
    *,
    org_id: str,
    requester_id: str,
    requester_kind: str,
    project: str,
    environment: str | None,
    access: AccessLevel,
    reason: str,
    duration_seconds: int,
    now: float,
) -> str:
    """Stores a new pending request and returns its id."""
    request_id = new_id()
    conn.execute(
        sa.insert(access_requests).values(
            id=request_id,
            org_id=org_id,
            requester_id=requester_id,
            requester_kind=requester_kind,
            project=project,
            environment=environment,
            access=access.value,
            reason=reason,
            duration_seconds=duration_seconds,
            status=RequestStatus.PENDING.value,
            created_at=now,
        )
    )
    return request_id


def find_request(
    conn: sa.Connection, org_id: str, request_id: str, *, for_update: bool = False
) -> AccessRequest | None:
    """Returns the organization's request ``request_id``, or None. ``for_update`` locks
    its row (PostgreSQL) so two deciders cannot both decide it."""
    if for_update:  # lock the request row alone: the outer joins cannot be locked
        conn.execute(
            sa.select(access_requests.c.id)
            .where(access_requests.c.id == request_id, access_requests.c.org_id == org_id)
            .with_for_update()
        )
    row = (
        conn.execute(
            sa.select(*_COLUMNS)
            .select_from(_FROM)
            .where(access_requests.c.id == request_id, access_requests.c.org_id == org_id)
        )
        .mappings()
        .first()
    )
    return _request(row) if row is not None else None


def _status_is(status: RequestStatus, now: float) -> sa.ColumnElement[bool]:
    """The SQL condition for requests that read as ``status`` at ``now``."""
    column = access_requests.c.status
    stale_pending = sa.and_(
        column == RequestStatus.PENDING.value,
        access_requests.c.created_at <= now - PENDING_SECONDS,
    )
    lapsed = sa.and_(column == RequestStatus.APPROVED.value, access_requests.c.expires_at <= now)
    if status is RequestStatus.PENDING:
        return sa.and_(column == status.value, sa.not_(stale_pending))
    if status is RequestStatus.APPROVED:
        return sa.and_(column == status.value, sa.not_(lapsed))
    if status is RequestStatus.EXPIRED:
        return sa.or_(column == status.value, stale_pending, lapsed)
    return column == status.value


def list_requests(
    conn: sa.Connection,
    org_id: str,
    *,
    now: float,
    requester_id: str | None = None,
    status: RequestStatus | None = None,
) -> list[AccessRequest]:
    """Returns the organization's requests (one requester's, one status's as read at
    ``now``), newest first."""
    query = (
        sa.select(*_COLUMNS)
        .select_from(_FROM)
        .where(access_requests.c.org_id == org_id)
        .order_by(access_requests.c.created_at.desc(), access_requests.c.id.desc())
    )
    if requester_id is not None:
        query = query.where(access_requests.c.requester_id == requester_id)
    if status is not None:
        query = query.where(_status_is(status, now))
    return [_request(row) for row in conn.execute(query).mappings()]


def record_decision(
    conn: sa.Connection,
    request_id: str,
    *,
    status: RequestStatus,
    decided_by: str,
    now: float,
    note: str | None = None,
    grant_id: str | None = None,
    expires_at: float | None = None,
) -> None:
    """Records that ``decided_by`` approved (with the grant and its expiry), denied or
    cancelled the request."""
    conn.execute(
        sa.update(access_requests)
        .where(access_requests.c.id == request_id)
        .values(
            status=status.value,
            decided_by=decided_by,
            decided_at=now,
            decision_note=note,
            grant_id=grant_id,
            expires_at=expires_at,
        )
    )
