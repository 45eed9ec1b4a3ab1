"""Inventory metadata of secrets (``storage.compliance_tables.secret_inventory``): one row
per secret at most, going with the secret; a secret without a row has no metadata yet."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa

from coffer.domain.inventory import InventoryEntry, InventoryFields, Sensitivity
from coffer.storage.compliance_tables import secret_inventory
from coffer.storage.read_limits import not_expired
from coffer.storage.tables import environments, projects, secret_versions, secrets

_FIELD_COLUMNS = (
    secret_inventory.c.owner,
    secret_inventory.c.system,
    secret_inventory.c.description,
    secret_inventory.c.sensitivity,
    secret_inventory.c.rotation_days,
)


def _fields(row: Sequence[Any]) -> InventoryFields:
    """The fields of the five ``_FIELD_COLUMNS`` values (all None for a missing row)."""
    owner, system, description, sensitivity, rotation_days = row
    return InventoryFields(
        owner=None if owner is None else str(owner),
        system=None if system is None else str(system),
        description=None if description is None else str(description),
        sensitivity=None if sensitivity is None else Sensitivity(str(sensitivity)),
        rotation_days=None if rotation_days is None else int(rotation_days),
    )


def inventory_of(conn: sa.Connection, secret_id: str) -> InventoryFields:
    """Returns the secret's inventory metadata (every field None when it has none)."""
    row = conn.execute(
        sa.select(*_FIELD_COLUMNS).where(secret_inventory.c.secret_id == secret_id)
    ).first()
    return InventoryFields() if row is None else _fields(row)


def save_inventory(
    conn: sa.Connection, secret_id: str, fields: InventoryFields, *, by: str, now: float
) -> None:
    """Creates or replaces the secret's inventory metadata."""
    conn.execute(sa.delete(secret_inventory).where(secret_inventory.c.secret_id == secret_id))
    conn.execute(
        sa.insert(secret_inventory).values(
            secret_id=secret_id,
            owner=fields.owner,
            system=fields.system,
            description=fields.description,
            sensitivity=None if fields.sensitivity is None else fields.sensitivity.value,
            rotation_days=fields.rotation_days,
            updated_at=now,
            updated_by=by,
        )
    )


def _records_query(now: float) -> sa.Select[Any]:
    return (
        sa.select(
            secrets.c.id,
            projects.c.name,
            environments.c.name,
            secrets.c.key,
            secrets.c.current_version,
            secret_versions.c.created_at,
            *_FIELD_COLUMNS,
        )
        .select_from(secrets)
        .join(environments, environments.c.id == secrets.c.environment_id)
        .join(projects, projects.c.id == environments.c.project_id)
        .join(
            secret_versions,
            sa.and_(
                secret_versions.c.secret_id == secrets.c.id,
                secret_versions.c.version == secrets.c.current_version,
            ),
        )
        .outerjoin(secret_inventory, secret_inventory.c.secret_id == secrets.c.id)
        .where(not_expired(secrets, now))
        .order_by(projects.c.name, environments.c.name, secrets.c.key)
    )


def _records(conn: sa.Connection, query: sa.Select[Any]) -> list[InventoryEntry]:
    return [
        InventoryEntry(
            secret_id=str(row[0]),
            project=str(row[1]),
            environment=str(row[2]),
            key=str(row[3]),
            current_version=int(row[4]),
            last_rotated=float(row[5]),
            fields=_fields(row[6:]),
        )
        for row in conn.execute(query)
    ]


def inventory_in(
    conn: sa.Connection, environment_ids: Collection[str], now: float
) -> list[InventoryEntry]:
    """Returns the unexpired secrets of the given environments with their metadata, by
    project, environment and key (one query)."""
    if not environment_ids:
        return []
    query = _records_query(now).where(secrets.c.environment_id.in_(sorted(environment_ids)))
    return _records(conn, query)


def entry_of(conn: sa.Connection, secret_id: str, now: float) -> InventoryEntry | None:
    """Returns one unexpired secret with its metadata, or None."""
    found = _records(conn, _records_query(now).where(secrets.c.id == secret_id))
    return found[0] if found else None


def inventory_named(
    conn: sa.Connection, org_id: str, environment: str, now: float
) -> list[InventoryEntry]:
    """Returns the unexpired secrets of every environment called ``environment`` in every
    project of the organization, with their metadata (what a policy for that name covers)."""
    query = _records_query(now).where(
        projects.c.org_id == org_id, environments.c.name == environment
    )
    return _records(conn, query)
