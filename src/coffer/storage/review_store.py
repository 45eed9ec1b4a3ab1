"""Access review campaigns (``access_reviews``, ``access_review_items``) and the snapshot of
every identity they start from (see ``domain.access_reviews``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from coffer.domain.access_reviews import (
    AccessReview,
    IdentityAccess,
    IdentityKind,
    Period,
    ReviewCounts,
    ReviewDecision,
    ReviewGrant,
    ReviewItem,
    ReviewStatus,
)
from coffer.storage import access_store, user_store
from coffer.storage.compliance_tables import access_review_items, access_reviews
from coffer.storage.tables import api_tokens, audit_log, machines, users

_REVIEW_COLUMNS = (
    access_reviews.c.id,
    access_reviews.c.org_id,
    access_reviews.c.name,
    access_reviews.c.status,
    access_reviews.c.created_by,
    access_reviews.c.created_at,
    access_reviews.c.due_at,
    access_reviews.c.signed_off_by,
    access_reviews.c.signed_off_at,
    access_reviews.c.digest,
)

_ITEM_COLUMNS = (
    access_review_items.c.identity_id,
    access_review_items.c.identity_kind,
    access_review_items.c.identity_name,
    access_review_items.c.role,
    access_review_items.c.access,
    access_review_items.c.last_used_at,
    access_review_items.c.decision,
    access_review_items.c.decided_by,
    access_review_items.c.decided_at,
    access_review_items.c.note,
)


def _review(row: Any) -> AccessReview:
    return AccessReview(
        id=row[0],
        org_id=row[1],
        name=row[2],
        status=ReviewStatus(row[3]),
        created_by=row[4],
        created_at=row[5],
        due_at=row[6],
        signed_off_by=row[7],
        signed_off_at=row[8],
        digest=row[9],
    )


def _json(raw: Any) -> Any:
    """JSON arrives parsed from psycopg and as text from sqlite3."""
    return json.loads(raw) if isinstance(raw, str | bytes) else raw


def _item(row: Any) -> ReviewItem:
    return ReviewItem(
        identity_id=row[0],
        identity_kind=IdentityKind(row[1]),
        identity_name=row[2],
        role=row[3],
        access=IdentityAccess.from_json(_json(row[4]) or {}),
        last_used_at=row[5],
        decision=ReviewDecision(row[6]) if row[6] else None,
        decided_by=row[7],
        decided_at=row[8],
        note=row[9],
    )


# --- the snapshot ---------------------------------------------------------------------------


def _grants_by_identity(
    conn: sa.Connection, org_id: str, now: float
) -> dict[str, list[ReviewGrant]]:
    found: dict[str, list[ReviewGrant]] = {}
    for grant in access_store.list_grants(conn, org_id):
        if grant.expires_at is not None and grant.expires_at <= now:
            continue  # an expired grant gives nothing
        found.setdefault(grant.identity_id, []).append(
            ReviewGrant(grant.project, grant.environment, grant.access.value, grant.expires_at)
        )
    for grants in found.values():
        grants.sort(key=lambda g: (g.project, g.environment or "", g.access))
    return found


def _last_token_use(conn: sa.Connection, org_id: str) -> dict[str, float]:
    rows = conn.execute(
        sa.select(api_tokens.c.identity_id, sa.func.max(api_tokens.c.last_used_at))
        .where(api_tokens.c.org_id == org_id)
        .group_by(api_tokens.c.identity_id)
    ).all()
    return {row[0]: float(row[1]) for row in rows if row[1] is not None}


def last_audit_entry_at(conn: sa.Connection, actor_id: str) -> float | None:
    """Returns the time of the newest audit entry with ``actor_id`` as actor, or None."""
    found = conn.execute(
        sa.select(audit_log.c.timestamp)
        .where(audit_log.c.actor_id == actor_id)
        .order_by(audit_log.c.seq.desc())
        .limit(1)
    ).scalar_one_or_none()
    return float(found) if found is not None else None


def _last_use(conn: sa.Connection, identity_id: str, tokens: dict[str, float]) -> float | None:
    """The later of the newest ``last_used_at`` of the identity's tokens (any state) and its
    newest audit entry as actor; None when it has neither."""
    times = [t for t in (tokens.get(identity_id), last_audit_entry_at(conn, identity_id)) if t]
    return max(times) if times else None


def snapshot_identities(conn: sa.Connection, org_id: str, now: float) -> list[ReviewItem]:
    """Returns every person and machine identity of the organization as undecided campaign
    lines: role, unexpired grants, restrictions and last use, people first, by name."""
    grants = _grants_by_identity(conn, org_id, now)
    tokens = _last_token_use(conn, org_id)
    lines = [
        ReviewItem(
            identity_id=member.id,
            identity_kind=IdentityKind.USER,
            identity_name=member.email,
            role=member.role.value,
            access=IdentityAccess(
                grants=tuple(grants.get(member.id, ())), mfa_enabled=member.mfa_enabled
            ),
            last_used_at=_last_use(conn, member.id, tokens),
        )
        for member in user_store.list_members(conn, org_id)
    ]
    lines.extend(
        ReviewItem(
            identity_id=machine.id,
            identity_kind=IdentityKind.MACHINE,
            identity_name=machine.name,
            role=None,
            access=IdentityAccess(
                grants=tuple(grants.get(machine.id, ())),
                allowed_ips=machine.allowed_ips,
                valid_after=machine.valid_after,
                valid_before=machine.valid_before,
            ),
            last_used_at=_last_use(conn, machine.id, tokens),
        )
        for machine in access_store.list_machines(conn, org_id)
    )
    return lines


def identity_exists(conn: sa.Connection, org_id: str, item: ReviewItem) -> bool:
    """True while the line's identity (by id) still belongs to the organization."""
    table = users if item.identity_kind is IdentityKind.USER else machines
    found = conn.execute(
        sa.select(table.c.id).where(table.c.id == item.identity_id, table.c.org_id == org_id)
    ).first()
    return found is not None


def existing_identities(conn: sa.Connection, org_id: str, ids: Iterable[str]) -> set[str]:
    """Returns those of ``ids`` that are people or machines of the organization now."""
    wanted = sorted(set(ids))
    if not wanted:
        return set()
    found: set[str] = set()
    for table in (users, machines):
        found.update(
            conn.execute(
                sa.select(table.c.id).where(table.c.org_id == org_id, table.c.id.in_(wanted))
            ).scalars()
        )
    return found


def identity_names(conn: sa.Connection, org_id: str, ids: Iterable[str]) -> dict[str, str]:
    """Returns the current e-mail, machine name or bootstrap token name of each of ``ids``
    that still exists in the organization."""
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    names: dict[str, str] = {}
    for query in (
        sa.select(users.c.id, users.c.email).where(users.c.org_id == org_id),
        sa.select(machines.c.id, machines.c.name).where(machines.c.org_id == org_id),
        sa.select(api_tokens.c.identity_id, api_tokens.c.name).where(
            api_tokens.c.org_id == org_id, api_tokens.c.identity_kind == "bootstrap"
        ),
    ):
        column = query.selected_columns[0]
        for identity_id, name in conn.execute(query.where(column.in_(wanted))).all():
            names.setdefault(identity_id, name)
    return names


# --- campaigns ------------------------------------------------------------------------------


def insert_review(conn: sa.Connection, review: AccessReview, items: Sequence[ReviewItem]) -> None:
    """Stores a new campaign with its lines."""
    conn.execute(
        sa.insert(access_reviews).values(
            id=review.id,
            org_id=review.org_id,
            name=review.name,
            status=review.status.value,
            created_by=review.created_by,
            created_at=review.created_at,
            due_at=review.due_at,
        )
    )
    if items:
        conn.execute(
            sa.insert(access_review_items),
            [
                {
                    "review_id": review.id,
                    "identity_id": item.identity_id,
                    "identity_kind": item.identity_kind.value,
                    "identity_name": item.identity_name,
                    "role": item.role,
                    "access": item.access.to_json(),
                    "last_used_at": item.last_used_at,
                    "decision": None,
                    "decided_by": None,
                    "decided_at": None,
                    "note": None,
                }
                for item in items
            ],
        )


def find_review(
    conn: sa.Connection, org_id: str, review_id: str, *, for_update: bool = False
) -> AccessReview | None:
    """Returns the organization's campaign ``review_id`` (locked for update when asked), or
    None."""
    query = sa.select(*_REVIEW_COLUMNS).where(
        access_reviews.c.id == review_id, access_reviews.c.org_id == org_id
    )
    row = conn.execute(query.with_for_update() if for_update else query).first()
    return _review(row) if row is not None else None


def review_items(conn: sa.Connection, review_id: str) -> list[ReviewItem]:
    """Returns a campaign's lines: people first, then machines, each by name."""
    rows = conn.execute(
        sa.select(*_ITEM_COLUMNS)
        .where(access_review_items.c.review_id == review_id)
        .order_by(
            access_review_items.c.identity_kind.desc(),
            access_review_items.c.identity_name,
            access_review_items.c.identity_id,
        )
    ).all()
    return [_item(row) for row in rows]


def list_reviews(
    conn: sa.Connection, org_id: str, period: Period
) -> list[tuple[AccessReview, ReviewCounts]]:
    """Returns the organization's campaigns active during ``period`` (started by its end,
    and signed off at its start or later, or still open), newest first, with their counts."""
    items = access_review_items
    counts = (
        sa.select(
            items.c.review_id,
            sa.func.count().label("total"),
            sa.func.sum(sa.case((items.c.decision == "keep", 1), else_=0)).label("kept"),
            sa.func.sum(sa.case((items.c.decision == "revoke", 1), else_=0)).label("revoked"),
        )
        .group_by(items.c.review_id)
        .subquery()
    )
    query = (
        sa.select(*_REVIEW_COLUMNS, counts.c.total, counts.c.kept, counts.c.revoked)
        .select_from(access_reviews.outerjoin(counts, counts.c.review_id == access_reviews.c.id))
        .where(access_reviews.c.org_id == org_id)
        .order_by(access_reviews.c.created_at.desc(), access_reviews.c.id.desc())
    )
    if period.end is not None:
        query = query.where(access_reviews.c.created_at <= period.end)
    if period.start is not None:
        query = query.where(
            sa.or_(
                access_reviews.c.signed_off_at.is_(None),
                access_reviews.c.signed_off_at >= period.start,
            )
        )
    return [
        (_review(row), ReviewCounts(int(row[10] or 0), int(row[11] or 0), int(row[12] or 0)))
        for row in conn.execute(query).all()
    ]


def record_decision(
    conn: sa.Connection,
    review_id: str,
    identity_id: str,
    *,
    decision: ReviewDecision,
    by: str,
    at: float,
    note: str | None,
) -> None:
    """Stores the decision of one line."""
    conn.execute(
        sa.update(access_review_items)
        .where(
            access_review_items.c.review_id == review_id,
            access_review_items.c.identity_id == identity_id,
        )
        .values(decision=decision.value, decided_by=by, decided_at=at, note=note)
    )


def sign_off(conn: sa.Connection, review: AccessReview) -> None:
    """Stores a campaign's sign-off (status, who, when and its digest)."""
    conn.execute(
        sa.update(access_reviews)
        .where(access_reviews.c.id == review.id)
        .values(
            status=review.status.value,
            signed_off_by=review.signed_off_by,
            signed_off_at=review.signed_off_at,
            digest=review.digest,
        )
    )
