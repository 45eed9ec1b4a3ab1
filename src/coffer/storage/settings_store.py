"""Organization-wide compliance settings (``storage.compliance_tables.compliance_settings``)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from coffer.storage.compliance_tables import compliance_settings


@dataclass(frozen=True)
class ComplianceSettings:
    """How many people must approve a root key rotation (1: the rotator alone), and how many
    days before its due date a secret's rotation counts as due."""

    root_rotation_approvals: int = 1
    rotation_reminder_days: int = 7


def settings_for(conn: sa.Connection, org_id: str) -> ComplianceSettings:
    """Returns the organization's settings (the defaults when none were saved)."""
    row = conn.execute(
        sa.select(
            compliance_settings.c.root_rotation_approvals,
            compliance_settings.c.rotation_reminder_days,
        ).where(compliance_settings.c.org_id == org_id)
    ).first()
    if row is None:
        return ComplianceSettings()
    return ComplianceSettings(
        root_rotation_approvals=int(row[0]), rotation_reminder_days=int(row[1])
    )


def save_settings(
    conn: sa.Connection, org_id: str, settings: ComplianceSettings, *, by: str, now: float
) -> None:
    """Creates or replaces the organization's settings."""
    conn.execute(sa.delete(compliance_settings).where(compliance_settings.c.org_id == org_id))
    conn.execute(
        sa.insert(compliance_settings).values(
            org_id=org_id,
            root_rotation_approvals=settings.root_rotation_approvals,
            rotation_reminder_days=settings.rotation_reminder_days,
            updated_at=now,
            updated_by=by,
        )
    )
