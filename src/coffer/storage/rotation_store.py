"""Rotation flags: secrets that must be rotated now whatever their schedule says (see
``storage.compliance_tables.rotation_flags``)."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from coffer.storage.compliance_tables import rotation_flags
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
