"""Machine identities and grants."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from coffer.domain.access import AccessLevel
from coffer.domain.team import GrantInfo, MachineInfo
from coffer.storage.ids import new_id
from coffer.storage.tables import environments, grants, machines, projects, users

_MACHINE_COLUMNS = (
    machines.c.id,
    machines.c.name,
    machines.c.description,
    machines.c.allowed_ips,
    machines.c.valid_after,
    machines.c.valid_before,
    machines.c.created_at,
)


def _machine(row: Any) -> MachineInfo:
    ips = row[3]
    if isinstance(ips, str):
        ips = json.loads(ips)
    return MachineInfo(row[0], row[1], row[2], tuple(ips or ()), row[4], row[5], row[6])


def insert_machine(
    conn: sa.Connection,
    *,
    org_id: str,
    name: str,
    description: str | None,
    allowed_ips: tuple[str, ...],
    valid_after: float | None,
    valid_before: float | None,
    created_by: str,
    now: float,
) -> MachineInfo:
    """Creates a machine identity and returns it."""
    info = MachineInfo(new_id(), name, description, allowed_ips, valid_after, valid_before, now)
    conn.execute(
        sa.insert(machines).values(
            id=info.id,
            org_id=org_id,
            name=name,
            description=description,
            allowed_ips=list(allowed_ips),
            valid_after=valid_after,
            valid_before=valid_before,
            created_by=created_by,
            created_at=now,
        )
    )
    return info


def find_machine(conn: sa.Connection, org_id: str, name: str) -> MachineInfo | None:
    """Returns the organization's machine ``name``, or None."""
    row = conn.execute(
        sa.select(*_MACHINE_COLUMNS).where(machines.c.org_id == org_id, machines.c.name == name)
    ).first()
    return _machine(row) if row is not None else None


def list_machines(conn: sa.Connection, org_id: str) -> list[MachineInfo]:
    """Returns the organization's machines by name."""
    rows = conn.execute(
        sa.select(*_MACHINE_COLUMNS).where(machines.c.org_id == org_id).order_by(machines.c.name)
    ).all()
    return [_machine(row) for row in rows]


def delete_machine(conn: sa.Connection, machine_id: str) -> None:
    """Deletes a machine identity and its grants."""
    conn.execute(sa.delete(grants).where(grants.c.identity_id == machine_id))
    conn.execute(sa.delete(machines).where(machines.c.id == machine_id))


def put_grant(
    conn: sa.Connection,
    *,
    org_id: str,
    identity_id: str,
    identity_kind: str,
    project_id: str,
    environment_id: str | None,
    access: AccessLevel,
    expires_at: float | None,
    created_by: str,
    now: float,
) -> str:
    """Stores a grant, replacing the identity's grant on the same project/environment;
    returns the new grant's id."""
    same_target = sa.and_(
        grants.c.identity_id == identity_id,
        grants.c.project_id == project_id,
        grants.c.environment_id.is_(None)
        if environment_id is None
        else grants.c.environment_id == environment_id,
    )
    conn.execute(sa.delete(grants).where(same_target))
    grant_id = new_id()
    conn.execute(
        sa.insert(grants).values(
            id=grant_id,
            org_id=org_id,
            identity_id=identity_id,
            identity_kind=identity_kind,
            project_id=project_id,
            environment_id=environment_id,
            access=access.value,
            expires_at=expires_at,
            created_by=created_by,
            created_at=now,
        )
    )
    return grant_id


def list_grants(
    conn: sa.Connection, org_id: str, *, identity_id: str | None = None, grant_id: str | None = None
) -> list[GrantInfo]:
    """Returns the organization's grants (of one identity, or one grant), expired ones too."""
    name = sa.func.coalesce(users.c.email, machines.c.name, grants.c.identity_id)
    query = (
        sa.select(
            grants.c.id,
            grants.c.identity_id,
            grants.c.identity_kind,
            name,
            projects.c.name,
            environments.c.name,
            grants.c.access,
            grants.c.expires_at,
            grants.c.created_at,
        )
        .select_from(
            grants.join(projects, projects.c.id == grants.c.project_id)
            .outerjoin(environments, environments.c.id == grants.c.environment_id)
            .outerjoin(users, users.c.id == grants.c.identity_id)
            .outerjoin(machines, machines.c.id == grants.c.identity_id)
        )
        .where(grants.c.org_id == org_id)
        .order_by(grants.c.created_at, grants.c.id)
    )
    if identity_id is not None:
        query = query.where(grants.c.identity_id == identity_id)
    if grant_id is not None:
        query = query.where(grants.c.id == grant_id)
    return [
        GrantInfo(r[0], r[1], r[2], r[3], r[4], r[5], AccessLevel(r[6]), r[7], r[8])
        for r in conn.execute(query).all()
    ]


def delete_grant(conn: sa.Connection, grant_id: str) -> None:
    """Deletes one grant."""
    conn.execute(sa.delete(grants).where(grants.c.id == grant_id))


def delete_identity_grants(conn: sa.Connection, identity_id: str) -> None:
    """Deletes every grant of an identity."""
    conn.execute(sa.delete(grants).where(grants.c.identity_id == identity_id))
