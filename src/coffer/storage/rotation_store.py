"""Rotation flags (secrets that must be rotated now whatever their schedule says, see
``storage.compliance_tables.rotation_flags``), the periods the schedule is computed from,
and the reminders already sent (``rotation_notices``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import sqlalchemy as sa

from coffer.domain.rotation_schedule import RotationFlag
from coffer.storage.compliance_tables import rotation_flags, rotation_notices, secret_inventory
from coffer.storage.database import dialect_insert
from coffer.storage.ids import new_id
from coffer.storage.tables import secrets


def flag_for_rotation(
    conn: sa.Connection,
    secret_ids: Iterable[str],
    *,
    reason: str,
    detail: str | None,
    by: str | None,
    now: float,
) -> int:
    """Flags each secret's current version as due for rotation now because of ``reason``
    (``offboarding``, ``manual``); writing a newer version resolves the flag. Returns how many
    secrets were flagged (unknown ids are skipped)."""
    ids = sorted(set(secret_ids))
    if not ids:
        return 0
    current = conn.execute(
        sa.select(secrets.c.id, secrets.c.current_version).where(secrets.c.id.in_(ids))
    ).all()
    if current:
        conn.execute(
            sa.insert(rotation_flags),
            [
                {
                    "id": new_id(),
                    "secret_id": secret_id,
                    "version": version,
                    "reason": reason,
                    "detail": detail[:300] if detail else None,
                    "flagged_at": now,
                    "flagged_by": by,
                }
                for secret_id, version in current
            ],
        )
    return len(current)


def flags_in(conn: sa.Connection, environment_id: str) -> dict[str, list[RotationFlag]]:
    """Returns every rotation flag of the environment's secrets (resolved ones included),
    keyed by secret id, oldest first."""
    scope = rotation_flags.join(secrets, secrets.c.id == rotation_flags.c.secret_id)
    return read_flags(conn, scope, secrets.c.environment_id == environment_id)


def read_flags(
    conn: sa.Connection, scope: sa.FromClause, *where: sa.ColumnElement[bool]
) -> dict[str, list[RotationFlag]]:
    """Returns the rotation flags of ``scope`` (a join holding ``rotation_flags``) that
    meet every ``where`` condition, keyed by secret id, oldest first."""
    rows = conn.execute(
        sa.select(
            rotation_flags.c.secret_id,
            rotation_flags.c.version,
            rotation_flags.c.reason,
            rotation_flags.c.detail,
            rotation_flags.c.flagged_at,
            rotation_flags.c.flagged_by,
        )
        .select_from(scope)
        .where(*where)
        .order_by(rotation_flags.c.flagged_at, rotation_flags.c.id)
    )
    found: dict[str, list[RotationFlag]] = defaultdict(list)
    for row in rows:
        found[row[0]].append(RotationFlag(*row[1:]))
    return found


def rotation_days_in(conn: sa.Connection, environment_id: str) -> dict[str, int]:
    """Returns the inventory rotation period (days) of each secret of the environment that
    has one, keyed by secret id."""
    rows = conn.execute(
        sa.select(secret_inventory.c.secret_id, secret_inventory.c.rotation_days)
        .join(secrets, secrets.c.id == secret_inventory.c.secret_id)
        .where(
            secrets.c.environment_id == environment_id,
            secret_inventory.c.rotation_days.is_not(None),
        )
    )
    return {secret_id: int(days) for secret_id, days in rows}


def record_notice(
    conn: sa.Connection, secret_id: str, version: int, state: str, now: float
) -> bool:
    """Records that the ``state`` reminder (``due`` or ``overdue``) of the secret's version
    was sent. Returns False, recording nothing, when it had been already (by this run or a
    concurrent one)."""
    insert = dialect_insert(conn)(rotation_notices).values(
        secret_id=secret_id, version=version, state=state, sent_at=now
    )
    inserted = conn.execute(
        insert.on_conflict_do_nothing(index_elements=["secret_id", "version", "state"]).returning(
            rotation_notices.c.secret_id
        )
    ).first()
    return inserted is not None
