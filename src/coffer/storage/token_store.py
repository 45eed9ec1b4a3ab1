"""Organizations and API tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from coffer.domain.models import Organization
from coffer.storage.ids import new_id
from coffer.storage.tables import api_tokens, organizations


@dataclass(frozen=True)
class TokenRecord:
    """A token row as the authenticator needs it."""

    id: str
    org_id: str
    kind: str
    name: str
    identity_id: str
    identity_kind: str


def insert_organization(conn: sa.Connection, name: str, now: float) -> Organization:
    """Creates an organization and returns it."""
    org = Organization(id=new_id(), name=name, created_at=now)
    conn.execute(sa.insert(organizations).values(id=org.id, name=name, created_at=now))
    return org


def count_organizations(conn: sa.Connection) -> int:
    """Returns how many organizations exist (0 means the vault is not initialised)."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(organizations)).scalar_one())


def insert_token(
    conn: sa.Connection,
    *,
    org_id: str,
    token_hash: str,
    kind: str,
    name: str,
    identity_id: str,
    identity_kind: str,
    now: float,
    expires_at: float | None = None,
) -> str:
    """Stores a token hash and returns the token row id."""
    token_id = new_id()
    conn.execute(
        sa.insert(api_tokens).values(
            id=token_id,
            org_id=org_id,
            token_hash=token_hash,
            kind=kind,
            name=name,
            identity_id=identity_id,
            identity_kind=identity_kind,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return token_id


ACTIVE_TOKEN_QUERY = sa.select(
    api_tokens.c.id,
    api_tokens.c.org_id,
    api_tokens.c.kind,
    api_tokens.c.name,
    api_tokens.c.identity_id,
    api_tokens.c.identity_kind,
).where(
    api_tokens.c.token_hash == sa.bindparam("token_hash"),
    api_tokens.c.revoked_at.is_(None),
    sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > sa.bindparam("now")),
)


def find_active_token(conn: sa.Connection, token_hash: str, now: float) -> TokenRecord | None:
    """Returns the unrevoked, unexpired token with this hash, or None."""
    row = conn.execute(ACTIVE_TOKEN_QUERY, {"token_hash": token_hash, "now": now}).first()
    if row is None:
        return None
    return TokenRecord(*row)
