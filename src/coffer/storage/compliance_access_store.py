"""The reads about people and credentials that the SOC 2 controls are computed from
(``domain.controls``): MFA, tokens and machines, access requests and the grants they gave,
access reviews' revoke decisions and offboardings. Names and ids only, never a token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.storage.compliance_tables import (
    access_requests,
    access_review_items,
    access_reviews,
    offboardings,
    operation_approvals,
)
from coffer.storage.tables import api_tokens, environments, grants, machines, projects, users
from coffer.storage.token_store import active_token


def identity_names(conn: sa.Connection, org_id: str) -> dict[str, str]:
    """Maps the ids of the organization's people (current and offboarded), machines and
    bootstrap tokens to an e-mail address, a machine name or ``bootstrap token``."""
    names: dict[str, str] = {}
    for user_id, email in conn.execute(
        sa.select(offboardings.c.user_id, offboardings.c.email).where(
            offboardings.c.org_id == org_id
        )
    ):
        names[user_id] = email
    for (identity_id,) in conn.execute(
        sa.select(api_tokens.c.identity_id)
        .where(api_tokens.c.org_id == org_id, api_tokens.c.identity_kind == "bootstrap")
        .distinct()
    ):
        names[identity_id] = "bootstrap token"
    for table, column in ((users, users.c.email), (machines, machines.c.name)):
        for identity_id, name in conn.execute(
            sa.select(table.c.id, column).where(table.c.org_id == org_id)
        ):
            names[identity_id] = name
    return names


def admins_mfa(conn: sa.Connection, org_id: str) -> list[tuple[str, bool]]:
    """Returns each owner's and admin's e-mail address and whether MFA is enrolled."""
    rows = conn.execute(
        sa.select(users.c.email, users.c.mfa_enabled_at)
        .where(users.c.org_id == org_id, users.c.role.in_(("owner", "admin")))
        .order_by(users.c.email)
    )
    return [(email, enabled is not None) for email, enabled in rows]


@dataclass(frozen=True)
class LiveToken:
    """A usable token's metadata (never the token)."""

    id: str
    kind: str
    name: str
    identity_id: str
    identity_kind: str
    expires_at: float | None
    idle_timeout: float | None


def live_tokens(
    conn: sa.Connection, org_id: str, now: float, identity_ids: Sequence[str] | None = None
) -> list[LiveToken]:
    """Returns the organization's usable tokens (of ``identity_ids`` only, when given)."""
    query = sa.select(
        api_tokens.c.id,
        api_tokens.c.kind,
        api_tokens.c.name,
        api_tokens.c.identity_id,
        api_tokens.c.identity_kind,
        api_tokens.c.expires_at,
        api_tokens.c.idle_timeout,
    ).where(api_tokens.c.org_id == org_id, active_token(now))
    if identity_ids is not None:
        query = query.where(api_tokens.c.identity_id.in_(list(identity_ids)))
    return [LiveToken(*row) for row in conn.execute(query.order_by(api_tokens.c.created_at))]


def machines_allow_lists(conn: sa.Connection, org_id: str) -> list[tuple[str, str, int]]:
    """Returns each machine identity's id, name and number of allowed networks."""
    rows = conn.execute(
        sa.select(machines.c.id, machines.c.name, machines.c.allowed_ips)
        .where(machines.c.org_id == org_id)
        .order_by(machines.c.name)
    )
    return [(mid, name, len(_json_list(ips))) for mid, name, ips in rows]


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        value = json.loads(value)
    return list(value or ())


def identities_holding_grants(
    conn: sa.Connection, identity_ids: Sequence[str], now: float
) -> set[str]:
    """Returns those of ``identity_ids`` that hold an unexpired grant other than ``none``."""
    if not identity_ids:
        return set()
    rows = conn.execute(
        sa.select(grants.c.identity_id).where(
            grants.c.identity_id.in_(list(identity_ids)),
            grants.c.access != "none",
            sa.or_(grants.c.expires_at.is_(None), grants.c.expires_at > now),
        )
    )
    return {row[0] for row in rows}


def existing_identities(conn: sa.Connection, identity_ids: Sequence[str]) -> set[str]:
    """Returns those of ``identity_ids`` that are a current person or machine."""
    if not identity_ids:
        return set()
    ids = list(identity_ids)
    found = set(conn.execute(sa.select(users.c.id).where(users.c.id.in_(ids))).scalars())
    found |= set(conn.execute(sa.select(machines.c.id).where(machines.c.id.in_(ids))).scalars())
    return found


# --- requests, grants, reviews, offboardings ------------------------------------------------


def undecided_requests(
    conn: sa.Connection, org_id: str, start: float, end: float
) -> list[sa.Row[Any]]:
    """Returns the access requests made in the period that no one has decided (stored as
    ``pending``, whether still open or expired unanswered): requester id, project,
    environment, access, created_at; oldest first."""
    return list(
        conn.execute(
            sa.select(
                access_requests.c.requester_id,
                access_requests.c.project,
                access_requests.c.environment,
                access_requests.c.access,
                access_requests.c.created_at,
            )
            .where(
                access_requests.c.org_id == org_id,
                access_requests.c.status == "pending",
                access_requests.c.created_at >= start,
                access_requests.c.created_at < end,
            )
            .order_by(access_requests.c.created_at)
        )
    )


def decided_requests(conn: sa.Connection, org_id: str, start: float, end: float) -> dict[str, int]:
    """Returns how many access requests were decided in the period, by status."""
    rows = conn.execute(
        sa.select(access_requests.c.status, sa.func.count())
        .where(
            access_requests.c.org_id == org_id,
            access_requests.c.decided_at >= start,
            access_requests.c.decided_at < end,
        )
        .group_by(access_requests.c.status)
    )
    return {str(status): int(count) for status, count in rows}


def approved_operations(conn: sa.Connection, org_id: str, start: float, end: float) -> int:
    """Returns how many separated-duty operations a second person approved in the period."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                operation_approvals.c.org_id == org_id,
                operation_approvals.c.status.in_(("approved", "used")),
                operation_approvals.c.decided_at >= start,
                operation_approvals.c.decided_at < end,
            )
        ).scalar_one()
    )


def self_approvals(conn: sa.Connection, org_id: str) -> list[str]:
    """Names every access request or operation approval decided (approved) by the person
    who asked for it: separation of duties says there must be none."""
    requests = conn.execute(
        sa.select(access_requests.c.id, access_requests.c.project, access_requests.c.environment)
        .where(
            access_requests.c.org_id == org_id,
            access_requests.c.status.in_(("approved", "expired")),
            access_requests.c.decided_by == access_requests.c.requester_id,
        )
        .order_by(access_requests.c.created_at)
    )
    named = [
        f"access request {rid} for {project}{'/' + env if env else ''}"
        for rid, project, env in requests
    ]
    operations = conn.execute(
        sa.select(operation_approvals.c.id, operation_approvals.c.operation)
        .where(
            operation_approvals.c.org_id == org_id,
            operation_approvals.c.status.in_(("approved", "used")),
            operation_approvals.c.decided_by == operation_approvals.c.requested_by,
        )
        .order_by(operation_approvals.c.created_at)
    )
    named += [f"approval {aid} of {operation}" for aid, operation in operations]
    return named


@dataclass(frozen=True)
class PersonGrant:
    """A grant given to a person in a period, with the approved request it came from."""

    id: str
    identity_id: str
    project: str
    environment: str | None
    access: str
    expires_at: float | None
    created_at: float
    created_by: str
    request_id: str | None


def person_grants_in(
    conn: sa.Connection, org_id: str, start: float, end: float
) -> list[PersonGrant]:
    """Returns the grants (other than ``none``) given to people in the period, with the
    approved access request each came from (None when none did)."""
    from_request = sa.and_(
        access_requests.c.grant_id == grants.c.id,
        access_requests.c.status.in_(("approved", "expired")),
    )
    rows = conn.execute(
        sa.select(
            grants.c.id,
            grants.c.identity_id,
            projects.c.name,
            environments.c.name,
            grants.c.access,
            grants.c.expires_at,
            grants.c.created_at,
            grants.c.created_by,
            access_requests.c.id,
        )
        .select_from(
            grants.join(projects, projects.c.id == grants.c.project_id)
            .outerjoin(environments, environments.c.id == grants.c.environment_id)
            .outerjoin(access_requests, from_request)
        )
        .where(
            grants.c.org_id == org_id,
            grants.c.identity_kind == "user",
            grants.c.access != "none",
            grants.c.created_at >= start,
            grants.c.created_at < end,
        )
        .order_by(grants.c.created_at, grants.c.id)
    )
    return [PersonGrant(*row) for row in rows]


def last_signed_off_review(
    conn: sa.Connection, org_id: str, before: float
) -> tuple[str, float] | None:
    """Returns the name and sign-off time of the newest review signed off before
    ``before``, or None."""
    row = conn.execute(
        sa.select(access_reviews.c.name, access_reviews.c.signed_off_at)
        .where(
            access_reviews.c.org_id == org_id,
            access_reviews.c.signed_off_at.is_not(None),
            access_reviews.c.signed_off_at < before,
        )
        .order_by(access_reviews.c.signed_off_at.desc())
        .limit(1)
    ).first()
    return (str(row[0]), float(row[1])) if row is not None else None


def revoke_decisions(conn: sa.Connection, org_id: str) -> list[sa.Row[Any]]:
    """Returns the revoke decisions of signed-off reviews: (review name, identity id,
    identity kind, identity name, decided_at)."""
    return list(
        conn.execute(
            sa.select(
                access_reviews.c.name,
                access_review_items.c.identity_id,
                access_review_items.c.identity_kind,
                access_review_items.c.identity_name,
                access_review_items.c.decided_at,
            )
            .select_from(
                access_review_items.join(
                    access_reviews, access_reviews.c.id == access_review_items.c.review_id
                )
            )
            .where(
                access_reviews.c.org_id == org_id,
                access_reviews.c.signed_off_at.is_not(None),
                access_review_items.c.decision == "revoke",
            )
            .order_by(access_reviews.c.signed_off_at, access_review_items.c.identity_name)
        )
    )


def offboarded(conn: sa.Connection, org_id: str) -> list[tuple[str, str, float]]:
    """Returns every offboarding of the organization: (user id, e-mail, when), oldest first."""
    rows = conn.execute(
        sa.select(offboardings.c.user_id, offboardings.c.email, offboardings.c.offboarded_at)
        .where(offboardings.c.org_id == org_id)
        .order_by(offboardings.c.offboarded_at)
    )
    return [(str(u), str(e), float(t)) for u, e, t in rows]
