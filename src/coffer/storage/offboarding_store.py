"""Offboarding records (``offboardings``) and the two questions offboarding asks the
database: which secrets exist now (to find those the member could read), and which secrets
the audit log shows the member did read."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.domain.access_reviews import Period
from coffer.domain.events import Event
from coffer.domain.offboarding import OffboardingRecord, ReadSecret
from coffer.storage.compliance_tables import offboardings
from coffer.storage.read_limits import not_expired
from coffer.storage.tables import audit_log, environments, projects, secrets


@dataclass(frozen=True)
class CurrentSecret:
    """A secret of the organization as it is now: where it lives and its current version."""

    secret_id: str
    project: str
    environment: str
    key: str
    version: int


def current_secrets(conn: sa.Connection, org_id: str, now: float) -> list[CurrentSecret]:
    """Returns every unexpired secret of every environment of every project of the
    organization, by project, environment and key."""
    rows = conn.execute(
        sa.select(
            secrets.c.id,
            projects.c.name,
            environments.c.name,
            secrets.c.key,
            secrets.c.current_version,
        )
        .select_from(
            secrets.join(environments, environments.c.id == secrets.c.environment_id).join(
                projects, projects.c.id == environments.c.project_id
            )
        )
        .where(projects.c.org_id == org_id, not_expired(secrets, now))
        .order_by(projects.c.name, environments.c.name, secrets.c.key)
    ).all()
    return [CurrentSecret(*row) for row in rows]


def secrets_read_by(conn: sa.Connection, org_id: str, actor_id: str) -> list[ReadSecret]:
    """Returns the vault secrets (project, environment, key) that ``secret.read`` entries
    of the organization's audit log show ``actor_id`` reading, with how often and when last,
    most recent first. Ephemeral secrets (no project) are left out."""
    last = sa.func.max(audit_log.c.timestamp)
    rows = conn.execute(
        sa.select(
            audit_log.c.project, audit_log.c.environment, audit_log.c.key, sa.func.count(), last
        )
        .where(
            audit_log.c.actor_id == actor_id,
            audit_log.c.action == Event.SECRET_READ.value,
            audit_log.c.org_id == org_id,
            audit_log.c.project.is_not(None),
            audit_log.c.environment.is_not(None),
            audit_log.c.key.is_not(None),
        )
        .group_by(audit_log.c.project, audit_log.c.environment, audit_log.c.key)
        .order_by(last.desc(), audit_log.c.project, audit_log.c.environment, audit_log.c.key)
    ).all()
    return [ReadSecret(r[0], r[1], r[2], int(r[3]), float(r[4])) for r in rows]


def insert_offboarding(conn: sa.Connection, org_id: str, record: OffboardingRecord) -> None:
    """Stores an offboarding record."""
    conn.execute(
        sa.insert(offboardings).values(
            id=record.id,
            org_id=org_id,
            user_id=record.user_id,
            email=record.email,
            offboarded_by=record.offboarded_by,
            offboarded_at=record.offboarded_at,
            summary=record.summary(),
        )
    )


def _record(row: Any) -> OffboardingRecord:
    summary = json.loads(row[5]) if isinstance(row[5], str | bytes) else row[5]
    return OffboardingRecord.from_row(
        id=row[0],
        user_id=row[1],
        email=row[2],
        offboarded_by=row[3],
        offboarded_at=row[4],
        summary=summary or {},
    )


def list_offboardings(conn: sa.Connection, org_id: str, period: Period) -> list[OffboardingRecord]:
    """Returns the organization's offboardings within ``period``, oldest first."""
    query = (
        sa.select(
            offboardings.c.id,
            offboardings.c.user_id,
            offboardings.c.email,
            offboardings.c.offboarded_by,
            offboardings.c.offboarded_at,
            offboardings.c.summary,
        )
        .where(offboardings.c.org_id == org_id)
        .order_by(offboardings.c.offboarded_at, offboardings.c.id)
    )
    if period.start is not None:
        query = query.where(offboardings.c.offboarded_at >= period.start)
    if period.end is not None:
        query = query.where(offboardings.c.offboarded_at <= period.end)
    return [_record(row) for row in conn.execute(query).all()]
