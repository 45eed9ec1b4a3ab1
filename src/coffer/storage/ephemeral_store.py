"""Standalone ephemeral secrets and shares. Values are only ever ciphertext here: sealed by
the server for ephemeral secrets, by the client (key never sent) for shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.domain.models import EphemeralKind
from coffer.domain.read_limits import LimitState, ReadLimits
from coffer.storage.read_limits import limit_columns, limit_state, not_expired
from coffer.storage.tables import ephemeral_secrets


@dataclass(frozen=True)
class EphemeralRow:
    """One ephemeral secret or share as stored."""

    id: str
    org_id: str
    kind: EphemeralKind
    key: str
    ciphertext: bytes
    created_by: str
    created_at: float
    updated_at: float
    limits: LimitState
    proof_hash: str | None = None


_COLUMNS = (
    ephemeral_secrets.c.id,
    ephemeral_secrets.c.org_id,
    ephemeral_secrets.c.kind,
    ephemeral_secrets.c.key,
    ephemeral_secrets.c.ciphertext,
    ephemeral_secrets.c.created_by,
    ephemeral_secrets.c.created_at,
    ephemeral_secrets.c.updated_at,
    ephemeral_secrets.c.proof_hash,
    *limit_columns(ephemeral_secrets),
)


def _row(values: Any) -> EphemeralRow:
    fields = tuple(values)
    return EphemeralRow(
        id=fields[0],
        org_id=fields[1],
        kind=EphemeralKind(fields[2]),
        key=fields[3],
        ciphertext=bytes(fields[4]),
        created_by=fields[5],
        created_at=fields[6],
        updated_at=fields[7],
        proof_hash=fields[8],
        limits=limit_state(fields[9:]),
    )


def insert(
    conn: sa.Connection,
    *,
    row_id: str,
    org_id: str,
    kind: EphemeralKind,
    key: str,
    ciphertext: bytes,
    created_by: str,
    limits: ReadLimits,
    now: float,
    lookup_hash: str | None = None,
    proof_hash: str | None = None,
) -> EphemeralRow:
    """Stores a new ephemeral secret or share, its TTL counted from ``now``, and returns the
    row as stored. Raises ``sa.exc.IntegrityError`` when the organization already has one of
    that kind and key."""
    assert limits.ttl_seconds is not None, "an ephemeral secret always expires"
    state = limits.state_from(now)
    conn.execute(
        sa.insert(ephemeral_secrets).values(
            id=row_id,
            org_id=org_id,
            kind=str(kind),
            key=key,
            lookup_hash=lookup_hash,
            proof_hash=proof_hash,
            ciphertext=ciphertext,
            created_by=created_by,
            created_at=now,
            updated_at=now,
            expires_at=state.expires_at,
            max_reads=state.max_reads,
            read_count=state.read_count,
            burn=state.burn,
            sealed_at=state.sealed_at,
        )
    )
    return EphemeralRow(
        id=row_id,
        org_id=org_id,
        kind=kind,
        key=key,
        ciphertext=ciphertext,
        created_by=created_by,
        created_at=now,
        updated_at=now,
        limits=state,
        proof_hash=proof_hash,
    )


def find(
    conn: sa.Connection, org_id: str, kind: EphemeralKind, key: str, *, for_update: bool = False
) -> EphemeralRow | None:
    """Returns the organization's ephemeral secret (or share) ``key``, expired or not."""
    query = sa.select(*_COLUMNS).where(
        ephemeral_secrets.c.org_id == org_id,
        ephemeral_secrets.c.kind == str(kind),
        ephemeral_secrets.c.key == key,
    )
    if for_update:
        query = query.with_for_update()
    found = conn.execute(query).first()
    return None if found is None else _row(found)


def find_by_lookup(conn: sa.Connection, lookup_hash: str) -> EphemeralRow | None:
    """Returns the share whose link token hashes to ``lookup_hash``, expired or not."""
    found = conn.execute(
        sa.select(*_COLUMNS).where(ephemeral_secrets.c.lookup_hash == lookup_hash)
    ).first()
    return None if found is None else _row(found)


def list_live(
    conn: sa.Connection, org_id: str, kind: EphemeralKind, now: float
) -> list[EphemeralRow]:
    """Returns the organization's unexpired ephemeral secrets of ``kind``, sorted by key."""
    rows = conn.execute(
        sa.select(*_COLUMNS)
        .where(
            ephemeral_secrets.c.org_id == org_id,
            ephemeral_secrets.c.kind == str(kind),
            not_expired(ephemeral_secrets, now),
        )
        .order_by(ephemeral_secrets.c.key)
    )
    return [_row(row) for row in rows]


def replace_value(conn: sa.Connection, row_id: str, ciphertext: bytes, now: float) -> None:
    """Stores a new ciphertext for the row."""
    conn.execute(
        sa.update(ephemeral_secrets)
        .where(ephemeral_secrets.c.id == row_id)
        .values(ciphertext=ciphertext, updated_at=now)
    )


def delete(conn: sa.Connection, row_id: str) -> bool:
    """Destroys the row; returns False when it was already gone."""
    result = conn.execute(sa.delete(ephemeral_secrets).where(ephemeral_secrets.c.id == row_id))
    return bool(result.rowcount)


def expired(
    conn: sa.Connection, now: float, limit: int, *, org_id: str | None = None
) -> list[EphemeralRow]:
    """Returns up to ``limit`` rows past their TTL (in one organization, or all), oldest
    first."""
    query = sa.select(*_COLUMNS).where(ephemeral_secrets.c.expires_at <= now)
    if org_id is not None:
        query = query.where(ephemeral_secrets.c.org_id == org_id)
    rows = conn.execute(query.order_by(ephemeral_secrets.c.expires_at).limit(limit))
    return [_row(row) for row in rows]
