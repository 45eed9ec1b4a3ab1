"""Operation approvals for separated duties
(``storage.compliance_tables.operation_approvals``).

Rows keep identity ids; names are joined in when read. ``expires_at`` is the end of the
pending time until a decision, then the end of the approval's validity. Whether a pending or
approved row has expired is computed when read, and the status filter applies the same rule
in SQL. ``target`` is ``project/environment`` for ``env.export`` and empty for
``root.rotate``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from coffer.domain.access_requests import ApprovalStatus, Operation, OperationApproval, Person
from coffer.storage.compliance_tables import operation_approvals
from coffer.storage.ids import new_id
from coffer.storage.tables import machines, organizations, users

_requester_user = users.alias("approval_requester")
_requester_machine = machines.alias("approval_requester_machine")
_decider_user = users.alias("approval_decider")

_COLUMNS = (
    operation_approvals,
    sa.func.coalesce(_requester_user.c.email, _requester_machine.c.name).label("requester_name"),
    _decider_user.c.email.label("decider_name"),
)
_FROM = (
    operation_approvals.outerjoin(
        _requester_user, _requester_user.c.id == operation_approvals.c.requested_by
    )
    .outerjoin(_requester_machine, _requester_machine.c.id == operation_approvals.c.requested_by)
    .outerjoin(_decider_user, _decider_user.c.id == operation_approvals.c.decided_by)
)


def _approval(row: Any) -> OperationApproval:
    decided_by = row["decided_by"]
    return OperationApproval(
        id=row["id"],
        org_id=row["org_id"],
        operation=Operation(row["operation"]),
        target=row["target"] or None,
        reason=row["reason"],
        requested_by=Person(row["requested_by"], row["requester_name"]),
        stored_status=ApprovalStatus(row["status"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        decided_by=Person(decided_by, row["decider_name"]) if decided_by else None,
        decided_at=row["decided_at"],
        used_at=row["used_at"],
    )


def insert_approval(
    conn: sa.Connection,
    *,
    org_id: str,
    operation: Operation,
    target: str | None,
    reason: str,
    requested_by: str,
    now: float,
    expires_at: float,
) -> str:
    """Stores a new pending approval (pending until ``expires_at``) and returns its id."""
    approval_id = new_id()
    conn.execute(
        sa.insert(operation_approvals).values(
            id=approval_id,
            org_id=org_id,
            operation=operation.value,
            target=target or "",
            reason=reason,
            requested_by=requested_by,
            status=ApprovalStatus.PENDING.value,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return approval_id


def find_approval(
    conn: sa.Connection, approval_id: str, *, org_id: str | None, for_update: bool = False
) -> OperationApproval | None:
    """Returns approval ``approval_id`` (of organization ``org_id``; of any when None, for
    the operator's root rotation), or None. ``for_update`` locks its row (PostgreSQL), so
    it is decided or used once."""
    where = [operation_approvals.c.id == approval_id]
    if org_id is not None:
        where.append(operation_approvals.c.org_id == org_id)
    if for_update:  # lock the approval row alone: the outer joins cannot be locked
        conn.execute(sa.select(operation_approvals.c.id).where(*where).with_for_update())
    row = conn.execute(sa.select(*_COLUMNS).select_from(_FROM).where(*where)).mappings().first()
    return _approval(row) if row is not None else None


def _status_is(status: ApprovalStatus, now: float) -> sa.ColumnElement[bool]:
    """The SQL condition for approvals that read as ``status`` at ``now``."""
    column = operation_approvals.c.status
    live = (ApprovalStatus.PENDING.value, ApprovalStatus.APPROVED.value)
    if status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED):
        return sa.and_(column == status.value, operation_approvals.c.expires_at > now)
    if status is ApprovalStatus.EXPIRED:
        return sa.or_(
            column == status.value,
            sa.and_(column.in_(live), operation_approvals.c.expires_at <= now),
        )
    return column == status.value


def list_approvals(
    conn: sa.Connection,
    org_id: str,
    *,
    now: float,
    requested_by: str | None = None,
    status: ApprovalStatus | None = None,
) -> list[OperationApproval]:
    """Returns the organization's approvals (one requester's, one status's as read at
    ``now``), newest first."""
    query = (
        sa.select(*_COLUMNS)
        .select_from(_FROM)
        .where(operation_approvals.c.org_id == org_id)
        .order_by(operation_approvals.c.created_at.desc(), operation_approvals.c.id.desc())
    )
    if requested_by is not None:
        query = query.where(operation_approvals.c.requested_by == requested_by)
    if status is not None:
        query = query.where(_status_is(status, now))
    return [_approval(row) for row in conn.execute(query).mappings()]


def record_decision(
    conn: sa.Connection,
    approval_id: str,
    *,
    status: ApprovalStatus,
    decided_by: str,
    now: float,
    expires_at: float | None = None,
) -> None:
    """Records an approval (valid until ``expires_at``) or a denial."""
    values: dict[str, Any] = {"status": status.value, "decided_by": decided_by, "decided_at": now}
    if expires_at is not None:
        values["expires_at"] = expires_at
    conn.execute(
        sa.update(operation_approvals)
        .where(operation_approvals.c.id == approval_id)
        .values(**values)
    )


def mark_used(conn: sa.Connection, approval_id: str, now: float) -> None:
    """Records that the approval was used (it cannot be used again)."""
    conn.execute(
        sa.update(operation_approvals)
        .where(operation_approvals.c.id == approval_id)
        .values(status=ApprovalStatus.USED.value, used_at=now)
    )


def organization_names(conn: sa.Connection) -> dict[str, str]:
    """Every organization of the vault: its name by id (a root rotation concerns them all)."""
    rows = conn.execute(sa.select(organizations.c.id, organizations.c.name))
    return {str(row[0]): str(row[1]) for row in rows}
