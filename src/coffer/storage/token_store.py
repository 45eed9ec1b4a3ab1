"""Organizations and API tokens (stored only as SHA-256 hashes)."""

from __future__ import annotations

import sqlalchemy as sa

from coffer.domain.models import Organization
from coffer.domain.team import TokenInfo
from coffer.storage.ids import new_id
from coffer.storage.tables import api_tokens, organizations


def insert_organization(conn: sa.Connection, name: str, now: float) -> Organization:
    """Creates an organization and returns it."""
    org = Organization(id=new_id(), name=name, created_at=now)
    conn.execute(sa.insert(organizations).values(id=org.id, name=name, created_at=now))
    return org


def find_organization_id(conn: sa.Connection, name: str) -> str | None:
    """Returns the id of the organization called ``name``, or None."""
    found: str | None = conn.execute(
        sa.select(organizations.c.id).where(organizations.c.name == name)
    ).scalar_one_or_none()
    return found


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
    idle_timeout: float | None = None,
) -> TokenInfo:
    """Stores a token hash and returns the token's metadata."""
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
            idle_timeout=idle_timeout,
            last_used_at=now,
        )
    )
    return TokenInfo(
        id=token_id,
        kind=kind,
        name=name,
        identity_id=identity_id,
        identity_kind=identity_kind,
        created_at=now,
        expires_at=expires_at,
        last_used_at=now,
        revoked_at=None,
    )


_INFO_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.kind,
    api_tokens.c.name,
    api_tokens.c.identity_id,
    api_tokens.c.identity_kind,
    api_tokens.c.created_at,
    api_tokens.c.expires_at,
    api_tokens.c.last_used_at,
    api_tokens.c.revoked_at,
)


def active_token(now: float | sa.BindParameter[float]) -> sa.ColumnElement[bool]:
    """The condition a usable token meets at ``now`` (a time or a bind parameter): not
    revoked, not past its expiry, and for a session not idle longer than its timeout."""
    return sa.and_(
        api_tokens.c.revoked_at.is_(None),
        sa.or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > now),
        sa.or_(
            api_tokens.c.idle_timeout.is_(None),
            api_tokens.c.last_used_at + api_tokens.c.idle_timeout > now,
        ),
    )


def list_tokens(
    conn: sa.Connection,
    org_id: str,
    *,
    now: float,
    identity_id: str | None = None,
    kinds: tuple[str, ...] | None = None,
) -> list[TokenInfo]:
    """Returns the organization's active tokens (of one identity, of some kinds), oldest first."""
    query = sa.select(*_INFO_COLUMNS).where(api_tokens.c.org_id == org_id, active_token(now))
    if identity_id is not None:
        query = query.where(api_tokens.c.identity_id == identity_id)
    if kinds is not None:
        query = query.where(api_tokens.c.kind.in_(kinds))
    rows = conn.execute(query.order_by(api_tokens.c.created_at, api_tokens.c.id)).all()
    return [TokenInfo(*row) for row in rows]


def find_token(conn: sa.Connection, org_id: str, token_id: str, now: float) -> TokenInfo | None:
    """Returns one active token of the organization by id, or None."""
    row = conn.execute(
        sa.select(*_INFO_COLUMNS).where(
            api_tokens.c.org_id == org_id, api_tokens.c.id == token_id, active_token(now)
        )
    ).first()
    return TokenInfo(*row) if row is not None else None


def count_active(conn: sa.Connection, identity_id: str, kind: str, now: float) -> int:
    """Returns how many active tokens of ``kind`` the identity holds."""
    query = sa.select(sa.func.count()).where(
        api_tokens.c.identity_id == identity_id, api_tokens.c.kind == kind, active_token(now)
    )
    return int(conn.execute(query).scalar_one())


def revoke_tokens(
    conn: sa.Connection,
    *,
    now: float,
    token_id: str | None = None,
    identity_id: str | None = None,
    except_token_id: str | None = None,
    kinds: tuple[str, ...] | None = None,
) -> int:
    """Revokes one token (``token_id``) or every active token of an identity (optionally of
    some kinds, optionally sparing one); returns how many were revoked."""
    if token_id is None and identity_id is None:
        raise ValueError("revoke_tokens needs a token_id or an identity_id")
    query = sa.update(api_tokens).where(api_tokens.c.revoked_at.is_(None)).values(revoked_at=now)
    if token_id is not None:
        query = query.where(api_tokens.c.id == token_id)
    if identity_id is not None:
        query = query.where(api_tokens.c.identity_id == identity_id)
    if except_token_id is not None:
        query = query.where(api_tokens.c.id != except_token_id)
    if kinds is not None:
        query = query.where(api_tokens.c.kind.in_(kinds))
    return conn.execute(query).rowcount
