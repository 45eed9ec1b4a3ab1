"""Rotators of secrets (``storage.compliance_tables.secret_rotators``): how each secret is
rotated at its source, and how its last run went. Configurations hold parameters only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.storage.compliance_tables import secret_rotators
from coffer.storage.tables import secrets

MAX_ERROR_LENGTH = 300
RUNNING = "running"


@dataclass(frozen=True)
class StoredRotator:
    """A secret's rotator as stored: its kind and parameters, who configured it and when,
    and the outcome of its last run (``succeeded`` or ``failed``, with the reason; ``running``
    while a run holds it)."""

    secret_id: str
    kind: str
    config: Mapping[str, Any]
    created_at: float
    created_by: str
    last_run_at: float | None
    last_status: str | None
    last_error: str | None


_COLUMNS = (
    secret_rotators.c.secret_id,
    secret_rotators.c.kind,
    secret_rotators.c.config,
    secret_rotators.c.created_at,
    secret_rotators.c.created_by,
    secret_rotators.c.last_run_at,
    secret_rotators.c.last_status,
    secret_rotators.c.last_error,
)


def find_rotator(conn: sa.Connection, secret_id: str) -> StoredRotator | None:
    """Returns the secret's rotator, or None."""
    row = conn.execute(sa.select(*_COLUMNS).where(secret_rotators.c.secret_id == secret_id)).first()
    return None if row is None else StoredRotator(*row)


def rotators_in(conn: sa.Connection, environment_id: str) -> dict[str, StoredRotator]:
    """Returns the rotators of the environment's secrets, keyed by secret id."""
    rows = conn.execute(
        sa.select(*_COLUMNS)
        .join(secrets, secrets.c.id == secret_rotators.c.secret_id)
        .where(secrets.c.environment_id == environment_id)
    )
    return {row[0]: StoredRotator(*row) for row in rows}


def save_rotator(
    conn: sa.Connection,
    secret_id: str,
    kind: str,
    config: Mapping[str, Any],
    *,
    by: str,
    now: float,
) -> StoredRotator:
    """Creates or replaces the secret's rotator (a new one has no runs yet)."""
    conn.execute(sa.delete(secret_rotators).where(secret_rotators.c.secret_id == secret_id))
    conn.execute(
        sa.insert(secret_rotators).values(
            secret_id=secret_id, kind=kind, config=dict(config), created_at=now, created_by=by
        )
    )
    return StoredRotator(secret_id, kind, dict(config), now, by, None, None, None)


def delete_rotator(conn: sa.Connection, secret_id: str) -> bool:
    """Removes the secret's rotator; returns False when it had none."""
    result = conn.execute(
        sa.delete(secret_rotators).where(secret_rotators.c.secret_id == secret_id)
    )
    return result.rowcount > 0


def record_run(
    conn: sa.Connection, secret_id: str, *, status: str, error: str | None, now: float
) -> None:
    """Records the outcome of a run of the secret's rotator (``error`` cut to 300
    characters)."""
    conn.execute(
        sa.update(secret_rotators)
        .where(secret_rotators.c.secret_id == secret_id)
        .values(
            last_run_at=now,
            last_status=status,
            last_error=error[:MAX_ERROR_LENGTH] if error else None,
        )
    )


def claim_run(conn: sa.Connection, secret_id: str, *, now: float, stale_after: float) -> bool:
    """Marks the secret's rotator ``running`` as of ``now`` unless another run holds it (its
    status is ``running`` and it started less than ``stale_after`` seconds ago); returns
    whether this run got it. A compare-and-set: of two concurrent claims, one wins (on
    PostgreSQL the second waits for the first's transaction, then sees ``running``)."""
    free = sa.or_(
        secret_rotators.c.last_status.is_(None),
        secret_rotators.c.last_status != RUNNING,
        secret_rotators.c.last_run_at.is_(None),
        secret_rotators.c.last_run_at <= now - stale_after,
    )
    result = conn.execute(
        sa.update(secret_rotators)
        .where(secret_rotators.c.secret_id == secret_id, free)
        .values(last_run_at=now, last_status=RUNNING, last_error=None)
    )
    return result.rowcount == 1


def release_run(
    conn: sa.Connection, secret_id: str, *, claimed_at: float, error: str, now: float
) -> None:
    """Marks the secret's rotator ``failed`` with ``error`` if it is still ``running`` from
    the claim made at ``claimed_at`` (a run that stopped without recording its outcome)."""
    conn.execute(
        sa.update(secret_rotators)
        .where(
            secret_rotators.c.secret_id == secret_id,
            secret_rotators.c.last_status == RUNNING,
            secret_rotators.c.last_run_at == claimed_at,
        )
        .values(last_run_at=now, last_status="failed", last_error=error[:MAX_ERROR_LENGTH])
    )
