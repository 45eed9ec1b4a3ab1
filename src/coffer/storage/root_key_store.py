"""Root-key generations (``root_keys``) and the KEK-sealed blobs a root rotation moves.

A KEK-sealed blob starts with the generation that sealed it (``crypto.keys.tag_generation``),
so the blobs still under an older generation are those whose first bytes differ from the new
generation's prefix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from coffer.domain.root_keys import ProviderName, RootKeyRecord, RootKeyState
from coffer.storage.tables import data_keys, ephemeral_secrets, projects, root_keys, users, webhooks

_COLUMNS = (
    root_keys.c.generation,
    root_keys.c.state,
    root_keys.c.provider,
    root_keys.c.key_id,
    root_keys.c.kek_check,
    root_keys.c.created_at,
    root_keys.c.activated_at,
    root_keys.c.retired_at,
    root_keys.c.wrapped_kek,
    root_keys.c.audit_keys_sealed,
)


def _record(row: Any) -> RootKeyRecord:
    return RootKeyRecord(
        generation=row[0],
        state=RootKeyState(row[1]),
        provider=ProviderName(row[2]),
        key_id=row[3],
        kek_check=row[4],
        created_at=row[5],
        activated_at=row[6],
        retired_at=row[7],
        wrapped_kek=row[8],
        audit_keys_sealed=row[9],
    )


def insert(conn: sa.Connection, record: RootKeyRecord) -> None:
    """Stores a new generation."""
    conn.execute(
        sa.insert(root_keys).values(
            generation=record.generation,
            state=record.state.value,
            provider=record.provider.value,
            key_id=record.key_id,
            kek_check=record.kek_check,
            created_at=record.created_at,
            activated_at=record.activated_at,
            retired_at=record.retired_at,
            wrapped_kek=record.wrapped_kek,
            audit_keys_sealed=record.audit_keys_sealed,
        )
    )


def all_generations(conn: sa.Connection) -> list[RootKeyRecord]:
    """Every generation, oldest first."""
    rows = conn.execute(sa.select(*_COLUMNS).order_by(root_keys.c.generation))
    return [_record(row) for row in rows]


def find(conn: sa.Connection, generation: int) -> RootKeyRecord | None:
    """The generation numbered ``generation``, or None."""
    row = conn.execute(sa.select(*_COLUMNS).where(root_keys.c.generation == generation)).first()
    return None if row is None else _record(row)


def in_state(
    conn: sa.Connection, state: RootKeyState, *, lock: bool = False
) -> RootKeyRecord | None:
    """The generation in ``state`` (active or pending: at most one each), or None. With
    ``lock`` it is share-locked on PostgreSQL, so a rotation cannot retire it before the
    caller's transaction ends."""
    query = sa.select(*_COLUMNS).where(root_keys.c.state == state.value)
    if lock:
        query = query.with_for_update(read=True)
    row = conn.execute(query).first()
    return None if row is None else _record(row)


def live(conn: sa.Connection, *, lock: bool = False) -> list[RootKeyRecord]:
    """The pending (first, when there is one) and active generations, in one query; share-
    locked on PostgreSQL with ``lock`` (see ``in_state``)."""
    query = (
        sa.select(*_COLUMNS)
        .where(root_keys.c.state.in_([RootKeyState.PENDING.value, RootKeyState.ACTIVE.value]))
        .order_by(root_keys.c.generation.desc())
    )
    if lock:
        query = query.with_for_update(read=True)
    return [_record(row) for row in conn.execute(query)]


def activate(conn: sa.Connection, pending: int, retiring: int, now: float) -> None:
    """Makes ``pending`` the active generation and retires ``retiring``, forgetting its
    wrapped KEK and sealed audit keys (nothing refers to them any more)."""
    conn.execute(
        sa.update(root_keys)
        .where(root_keys.c.generation == retiring)
        .values(
            state=RootKeyState.RETIRED.value,
            retired_at=now,
            wrapped_kek=None,
            audit_keys_sealed=None,
        )
    )
    conn.execute(
        sa.update(root_keys)
        .where(root_keys.c.generation == pending)
        .values(state=RootKeyState.ACTIVE.value, activated_at=now)
    )


def lock_generation(conn: sa.Connection, generation: int) -> None:
    """Takes the generation's row lock (PostgreSQL): waits for transactions that share-locked
    it to seal something under it."""
    conn.execute(
        sa.update(root_keys)
        .where(root_keys.c.generation == generation)
        .values(state=root_keys.c.state)
    )


@dataclass(frozen=True)
class SealedBlob:
    """A KEK-sealed value: which table (``kind``), its row's key, the blob and the fields its
    associated data binds it to."""

    kind: str
    row_key: tuple[Any, ...]
    blob: bytes = field(repr=False)
    bound_to: tuple[Any, ...]


@dataclass(frozen=True)
class _SealedColumn:
    table: sa.Table
    row_key: tuple[sa.Column[Any], ...]
    blob: sa.Column[Any]
    bound_to: tuple[sa.Column[Any], ...]
    joins: tuple[tuple[sa.Table, sa.ColumnElement[bool]], ...] = ()
    only: tuple[sa.ColumnElement[bool], ...] = ()


SEALED_COLUMNS: dict[str, _SealedColumn] = {
    "data_key": _SealedColumn(
        data_keys,
        (data_keys.c.project_id, data_keys.c.version),
        data_keys.c.wrapped_key,
        (projects.c.org_id, data_keys.c.project_id, data_keys.c.version),
        joins=((projects, projects.c.id == data_keys.c.project_id),),
    ),
    "mfa_seed": _SealedColumn(
        users, (users.c.id,), users.c.mfa_seed, (users.c.id,), only=(users.c.mfa_seed.is_not(None),)
    ),
    "webhook_secret": _SealedColumn(
        webhooks,
        (webhooks.c.id,),
        webhooks.c.secret_sealed,
        (webhooks.c.org_id, webhooks.c.id),
    ),
    "ephemeral_secret": _SealedColumn(
        ephemeral_secrets,
        (ephemeral_secrets.c.id,),
        ephemeral_secrets.c.ciphertext,
        (ephemeral_secrets.c.org_id, ephemeral_secrets.c.id, ephemeral_secrets.c.key),
        only=(ephemeral_secrets.c.kind == "secret",),
    ),
}


def _not_under(spec: _SealedColumn, prefix: bytes) -> sa.ColumnElement[bool]:
    return sa.and_(
        sa.func.substr(spec.blob, 1, len(prefix)) != sa.literal(prefix, sa.LargeBinary),
        *spec.only,
    )


def count_not_under(conn: sa.Connection, prefix: bytes) -> int:
    """How many sealed blobs, in all tables, were not sealed by the generation whose blobs
    start with ``prefix``."""
    total = 0
    for spec in SEALED_COLUMNS.values():
        query = sa.select(sa.func.count()).select_from(spec.table).where(_not_under(spec, prefix))
        total += int(conn.execute(query).scalar_one())
    return total


def batch_not_under(conn: sa.Connection, prefix: bytes, limit: int) -> list[SealedBlob]:
    """Up to ``limit`` blobs not sealed by the generation whose blobs start with ``prefix``."""
    found: list[SealedBlob] = []
    for kind, spec in SEALED_COLUMNS.items():
        if len(found) >= limit:
            break
        source: sa.FromClause = spec.table
        for table, on in spec.joins:
            source = source.join(table, on)
        query = (
            sa.select(*spec.row_key, spec.blob, *spec.bound_to)
            .select_from(source)
            .where(_not_under(spec, prefix))
            .limit(limit - len(found))
        )
        width = len(spec.row_key)
        for row in conn.execute(query):
            found.append(
                SealedBlob(kind, tuple(row[:width]), bytes(row[width]), tuple(row[width + 1 :]))
            )
    return found


def replace_blob(conn: sa.Connection, item: SealedBlob, blob: bytes) -> bool:
    """Stores ``blob`` in place of ``item.blob`` unless the row changed meanwhile; True when
    it was stored."""
    spec = SEALED_COLUMNS[item.kind]
    matches = [column == value for column, value in zip(spec.row_key, item.row_key, strict=True)]
    result = conn.execute(
        sa.update(spec.table).where(*matches, spec.blob == item.blob).values({spec.blob.name: blob})
    )
    return result.rowcount == 1
