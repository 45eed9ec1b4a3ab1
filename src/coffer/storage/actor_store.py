"""The two queries that turn a token hash into an ``Actor`` with everything the policy needs.

Both the full request path and the hot read path run exactly these statements (the hot path
through the driver), and build the actor with ``actor_from_rows``, so authentication has one
definition.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from coffer.domain.access import AccessLevel, Grant, Restrictions, Role
from coffer.domain.models import Actor, ActorKind
from coffer.storage.change_tracking import CACHE_NEUTRAL
from coffer.storage.tables import (
    api_tokens,
    environments,
    grants,
    machines,
    organizations,
    projects,
    users,
)
from coffer.storage.token_store import active_token

ACTOR_QUERY = (
    sa.select(
        api_tokens.c.id,
        api_tokens.c.org_id,
        api_tokens.c.kind,
        api_tokens.c.name,
        api_tokens.c.identity_id,
        api_tokens.c.identity_kind,
        api_tokens.c.idle_timeout,
        api_tokens.c.last_used_at,
        users.c.email,
        users.c.role,
        users.c.mfa_enabled_at,
        organizations.c.require_mfa,
        machines.c.name,
        machines.c.allowed_ips,
        machines.c.valid_after,
        machines.c.valid_before,
        api_tokens.c.expires_at,
    )
    .select_from(
        api_tokens.join(organizations, organizations.c.id == api_tokens.c.org_id)
        .outerjoin(users, users.c.id == api_tokens.c.identity_id)
        .outerjoin(machines, machines.c.id == api_tokens.c.identity_id)
    )
    .where(
        api_tokens.c.token_hash == sa.bindparam("token_hash"),
        active_token(sa.bindparam("now", type_=sa.Float)),
    )
)

GRANTS_QUERY = (
    sa.select(projects.c.name, environments.c.name, grants.c.access, grants.c.expires_at)
    .select_from(
        grants.join(projects, projects.c.id == grants.c.project_id).outerjoin(
            environments, environments.c.id == grants.c.environment_id
        )
    )
    .where(
        grants.c.identity_id == sa.bindparam("identity_id"),
        sa.or_(grants.c.expires_at.is_(None), grants.c.expires_at > sa.bindparam("now")),
    )
)

# Positions in an ACTOR_QUERY row.
TOKEN_ID, ORG_ID, TOKEN_KIND, TOKEN_NAME, IDENTITY_ID, IDENTITY_KIND = range(6)
IDLE_TIMEOUT, LAST_USED_AT = 6, 7
TOKEN_EXPIRES_AT = 16


def _networks(raw: Any) -> tuple[str, ...]:
    """JSON arrives parsed from psycopg and as text from sqlite3."""
    if raw is None:
        return ()
    items = json.loads(raw) if isinstance(raw, str | bytes) else raw
    return tuple(str(item) for item in items)


def actor_from_rows(row: Sequence[Any], grant_rows: Iterable[Sequence[Any]]) -> Actor | None:
    """Returns the actor for an ACTOR_QUERY row and its GRANTS_QUERY rows; None when the
    identity behind the token no longer exists (a removed user or deleted machine)."""
    kind = ActorKind(row[IDENTITY_KIND])
    email, role_text, mfa_enabled_at, require_mfa = row[8], row[9], row[10], row[11]
    machine_name, allowed_ips, valid_after, valid_before = row[12], row[13], row[14], row[15]
    granted = tuple(
        Grant(project=g[0], environment=g[1], access=AccessLevel(g[2]), expires_at=g[3])
        for g in grant_rows
    )
    common = {
        "id": row[IDENTITY_ID],
        "kind": kind,
        "org_id": row[ORG_ID],
        "grants": granted,
        "token_id": row[TOKEN_ID],
        "token_kind": row[TOKEN_KIND],
    }
    if kind is ActorKind.USER:
        if email is None:
            return None
        restrictions = Restrictions(
            mfa_enrolment_required=bool(require_mfa) and mfa_enabled_at is None
        )
        return Actor(name=email, role=Role(role_text), restrictions=restrictions, **common)
    if kind is ActorKind.MACHINE:
        if machine_name is None:
            return None
        restrictions = Restrictions(
            networks=_networks(allowed_ips), not_before=valid_after, not_after=valid_before
        )
        return Actor(name=machine_name, role=None, restrictions=restrictions, **common)
    return Actor(name=row[TOKEN_NAME], role=Role.OWNER, **common)


def load_actor(conn: sa.Connection, token_hash: str, now: float) -> tuple[Actor, Any] | None:
    """Returns (actor, token row) for an active token hash, or None."""
    row = conn.execute(ACTOR_QUERY, {"token_hash": token_hash, "now": now}).first()
    if row is None:
        return None
    grant_rows = conn.execute(GRANTS_QUERY, {"identity_id": row[IDENTITY_ID], "now": now}).all()
    actor = actor_from_rows(row, grant_rows)
    return (actor, row) if actor is not None else None


def touch_token(conn: sa.Connection, token_id: str, now: float) -> None:
    """Records that a token was just used (sliding the idle expiry of a session)."""
    conn.execute(
        sa.update(api_tokens)
        .where(api_tokens.c.id == token_id)
        .values(last_used_at=now)
        .execution_options(**{CACHE_NEUTRAL: True})
    )
