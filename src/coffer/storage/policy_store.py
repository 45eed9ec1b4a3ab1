"""Environment policies (``domain.inventory.EnvironmentPolicy``) of an organization."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from coffer.domain.inventory import EnvironmentPolicy
from coffer.storage.compliance_tables import environment_policies

# Whether the organization's policy for an environment name wants reads to state a reason
# (parameters ``org_id`` and ``environment``), for the hot path's raw cursor.
READ_REASON_QUERY = sa.select(environment_policies.c.require_read_reason).where(
    environment_policies.c.org_id == sa.bindparam("org_id"),
    environment_policies.c.environment == sa.bindparam("environment"),
)


def reason_required_from_row(row: tuple[Any, ...] | None) -> bool:
    """Whether reads must state a reason, from the row of ``READ_REASON_QUERY`` (None when
    the environment has no policy)."""
    return row is not None and bool(row[0])


def _policy(row: sa.RowMapping) -> EnvironmentPolicy:
    return EnvironmentPolicy(
        environment=row["environment"],
        required_fields=tuple(row["required_fields"]),
        max_rotation_days=row["max_rotation_days"],
        require_read_reason=bool(row["require_read_reason"]),
        export_approvals=int(row["export_approvals"]),
    )


def policy_for(conn: sa.Connection, org_id: str, environment: str) -> EnvironmentPolicy | None:
    """Returns the organization's policy for environments called ``environment``, or None."""
    row = (
        conn.execute(
            sa.select(environment_policies).where(
                environment_policies.c.org_id == org_id,
                environment_policies.c.environment == environment,
            )
        )
        .mappings()
        .first()
    )
    return _policy(row) if row is not None else None


def all_policies(conn: sa.Connection, org_id: str) -> list[EnvironmentPolicy]:
    """Returns every policy of the organization, by environment name."""
    rows = conn.execute(
        sa.select(environment_policies)
        .where(environment_policies.c.org_id == org_id)
        .order_by(environment_policies.c.environment)
    ).mappings()
    return [_policy(row) for row in rows]


def save_policy(
    conn: sa.Connection, org_id: str, policy: EnvironmentPolicy, *, by: str, now: float
) -> None:
    """Creates or replaces the organization's policy for ``policy.environment``."""
    conn.execute(
        sa.delete(environment_policies).where(
            environment_policies.c.org_id == org_id,
            environment_policies.c.environment == policy.environment,
        )
    )
    conn.execute(
        sa.insert(environment_policies).values(
            org_id=org_id,
            environment=policy.environment,
            required_fields=list(policy.required_fields),
            max_rotation_days=policy.max_rotation_days,
            require_read_reason=policy.require_read_reason,
            export_approvals=policy.export_approvals,
            updated_at=now,
            updated_by=by,
        )
    )


def delete_policy(conn: sa.Connection, org_id: str, environment: str) -> bool:
    """Removes the policy; returns False when there was none."""
    result = conn.execute(
        sa.delete(environment_policies).where(
            environment_policies.c.org_id == org_id,
            environment_policies.c.environment == environment,
        )
    )
    return result.rowcount > 0
