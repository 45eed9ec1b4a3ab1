"""The reads about secrets and the deployment that the SOC 2 controls and evidence packs
are computed from (``domain.controls``): the inventory with each secret's rotation inputs,
how versions are sealed and who wrote them, scanner exposures, production environments,
webhooks and the audit log's seal. Metadata only: ciphertexts are measured (their length
and version byte), never returned. People and credentials: ``compliance_access_store``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.domain.evidence import day_text
from coffer.domain.exposures import ExposureRecord
from coffer.domain.rotation_schedule import RotationFlag
from coffer.storage import rotation_store
from coffer.storage.compliance_tables import (
    rotation_flags,
    secret_inventory,
    secret_rotators,
)
from coffer.storage.read_limits import not_expired
from coffer.storage.tables import (
    audit_checkpoints,
    audit_log,
    data_keys,
    environments,
    organizations,
    projects,
    secret_exposures,
    secret_versions,
    secrets,
    webhooks,
)

ENVELOPE_MIN_BYTES = 1 + 12 + 16  # version byte, nonce, GCM tag
ENVELOPE_VERSION = b"\x01"
NAMES_LIMIT = 1000  # failing items named at most (the counts stay exact)

_SECRET_SCOPE = secrets.join(environments, environments.c.id == secrets.c.environment_id).join(
    projects, projects.c.id == environments.c.project_id
)


def secret_name(project: str, environment: str, key: str) -> str:
    """``project/environment/KEY``, as the pack names a secret."""
    return f"{project}/{environment}/{key}"


def organization(conn: sa.Connection, org_id: str) -> tuple[str, bool]:
    """Returns the organization's name and whether it requires MFA."""
    row = conn.execute(
        sa.select(organizations.c.name, organizations.c.require_mfa).where(
            organizations.c.id == org_id
        )
    ).one()
    return str(row[0]), bool(row[1])


# --- secrets ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryRow:
    """One unexpired secret with its inventory fields, current version and what forces a
    rotation now (an exposure of the current version, a flag holding for it)."""

    secret_id: str
    project: str
    environment: str
    key: str
    current_version: int
    created_at: float
    last_rotated: float
    owner: str | None
    system: str | None
    description: str | None
    sensitivity: str | None
    rotation_days: int | None
    exposed: bool
    flagged: bool
    rotator: str | None

    @property
    def name(self) -> str:
        """``project/environment/KEY``."""
        return secret_name(self.project, self.environment, self.key)


def inventory_rows(conn: sa.Connection, org_id: str, now: float) -> list[InventoryRow]:
    """Returns every unexpired secret of the organization with its inventory, by project,
    environment and key."""
    current = sa.and_(
        secret_versions.c.secret_id == secrets.c.id,
        secret_versions.c.version == secrets.c.current_version,
    )
    exposed = (
        sa.select(secret_exposures.c.id)
        .where(
            secret_exposures.c.secret_id == secrets.c.id,
            secret_exposures.c.version == secrets.c.current_version,
        )
        .exists()
    )
    flagged = (
        sa.select(rotation_flags.c.id)
        .where(
            rotation_flags.c.secret_id == secrets.c.id,
            rotation_flags.c.version >= secrets.c.current_version,
        )
        .exists()
    )
    query = (
        sa.select(
            secrets.c.id,
            projects.c.name,
            environments.c.name,
            secrets.c.key,
            secrets.c.current_version,
            secrets.c.created_at,
            secret_versions.c.created_at,
            secret_inventory.c.owner,
            secret_inventory.c.system,
            secret_inventory.c.description,
            secret_inventory.c.sensitivity,
            secret_inventory.c.rotation_days,
            exposed,
            flagged,
            secret_rotators.c.kind,
        )
        .select_from(
            _SECRET_SCOPE.join(secret_versions, current)
            .outerjoin(secret_inventory, secret_inventory.c.secret_id == secrets.c.id)
            .outerjoin(secret_rotators, secret_rotators.c.secret_id == secrets.c.id)
        )
        .where(projects.c.org_id == org_id, not_expired(secrets, now))
        .order_by(projects.c.name, environments.c.name, secrets.c.key)
    )
    return [
        InventoryRow(
            secret_id=row[0],
            project=row[1],
            environment=row[2],
            key=row[3],
            current_version=row[4],
            created_at=row[5],
            last_rotated=row[6],
            owner=row[7],
            system=row[8],
            description=row[9],
            sensitivity=row[10],
            rotation_days=row[11],
            exposed=bool(row[12]),
            flagged=bool(row[13]),
            rotator=row[14],
        )
        for row in conn.execute(query)
    ]


_EXPOSURE_SCOPE = _SECRET_SCOPE.join(secret_exposures, secret_exposures.c.secret_id == secrets.c.id)


def open_exposures_and_flags(
    conn: sa.Connection, org_id: str
) -> tuple[dict[str, list[ExposureRecord]], dict[str, list[RotationFlag]]]:
    """Returns, by secret id, the exposures of each secret's current version and the flags
    that hold for it (of the current version or a newer one): what makes it ``rotate
    now``."""
    exposures: dict[str, list[ExposureRecord]] = defaultdict(list)
    rows = conn.execute(
        sa.select(
            secret_exposures.c.secret_id,
            secret_exposures.c.version,
            secret_exposures.c.detected_at,
            secret_exposures.c.rule_id,
            secret_exposures.c.location,
            secret_exposures.c.reported_by,
        )
        .select_from(_EXPOSURE_SCOPE)
        .where(
            projects.c.org_id == org_id,
            secret_exposures.c.version == secrets.c.current_version,
        )
        .order_by(secret_exposures.c.detected_at.desc(), secret_exposures.c.id)
    )
    for secret_id, version, detected, rule, location, by in rows:
        exposures[secret_id].append(ExposureRecord(version, detected, rule, location, by or ""))
    flags = rotation_store.read_flags(
        conn,
        _SECRET_SCOPE.join(rotation_flags, rotation_flags.c.secret_id == secrets.c.id),
        projects.c.org_id == org_id,
        rotation_flags.c.version >= secrets.c.current_version,
    )
    return exposures, flags


_VERSION_SCOPE = _SECRET_SCOPE.join(secret_versions, secret_versions.c.secret_id == secrets.c.id)


def count_versions(conn: sa.Connection, org_id: str) -> int:
    """Returns how many secret versions the organization stores."""
    query = sa.select(sa.func.count()).select_from(_VERSION_SCOPE)
    return int(conn.execute(query.where(projects.c.org_id == org_id)).scalar_one())


def _version_names(conn: sa.Connection, org_id: str, condition: Any, join: Any = None) -> list[str]:
    scope = _VERSION_SCOPE
    if join is not None:
        scope = scope.outerjoin(*join)
    rows = conn.execute(
        sa.select(projects.c.name, environments.c.name, secrets.c.key, secret_versions.c.version)
        .select_from(scope)
        .where(projects.c.org_id == org_id, condition)
        .order_by(projects.c.name, environments.c.name, secrets.c.key, secret_versions.c.version)
        .limit(NAMES_LIMIT)
    )
    return [f"{secret_name(p, e, k)} v{v}" for p, e, k, v in rows]


def unprotected_versions(conn: sa.Connection, org_id: str) -> list[str]:
    """Names the secret versions that are not AES-GCM envelopes under a stored data key of
    their project (a data key destroyed too early, a ciphertext too short to be one, or an
    unknown envelope version)."""
    key_row = sa.and_(
        data_keys.c.project_id == projects.c.id,
        data_keys.c.version == secret_versions.c.key_version,
    )
    condition = sa.or_(
        data_keys.c.version.is_(None),
        sa.func.length(secret_versions.c.ciphertext) < ENVELOPE_MIN_BYTES,
        sa.func.substr(secret_versions.c.ciphertext, 1, 1)
        != sa.literal(ENVELOPE_VERSION, sa.LargeBinary),
    )
    return _version_names(conn, org_id, condition, (data_keys, key_row))


def versions_without_author(conn: sa.Connection, org_id: str) -> list[str]:
    """Names the secret versions whose author is not recorded."""
    condition = sa.or_(
        sa.func.coalesce(secret_versions.c.author_id, "") == "",
        sa.func.coalesce(secret_versions.c.author_kind, "") == "",
    )
    return _version_names(conn, org_id, condition)


@dataclass(frozen=True)
class ExposureCounts:
    """Scanner matches of the organization's secrets, and the secrets whose current
    version was found (named, with where and when)."""

    recorded: int
    last_detected_at: float | None
    exposed_current: list[str]


def exposure_counts(conn: sa.Connection, org_id: str) -> ExposureCounts:
    """Returns the organization's scanner matches (see ``ExposureCounts``)."""
    scope = _EXPOSURE_SCOPE
    recorded, last = conn.execute(
        sa.select(sa.func.count(), sa.func.max(secret_exposures.c.detected_at))
        .select_from(scope)
        .where(projects.c.org_id == org_id)
    ).one()
    rows = conn.execute(
        sa.select(
            projects.c.name,
            environments.c.name,
            secrets.c.key,
            secret_exposures.c.version,
            secret_exposures.c.location,
            secret_exposures.c.detected_at,
        )
        .select_from(scope)
        .where(
            projects.c.org_id == org_id,
            secret_exposures.c.version == secrets.c.current_version,
        )
        .order_by(projects.c.name, environments.c.name, secrets.c.key, secret_exposures.c.id)
    )
    named: dict[str, str] = {}
    for project, env, key, version, location, detected in rows:
        name = secret_name(project, env, key)
        named.setdefault(name, f"{name} v{version} found at {location} ({day_text(detected)})")
    return ExposureCounts(int(recorded), last, list(named.values())[:NAMES_LIMIT])


# --- deployment and the audit log ----------------------------------------------------------


def environment_names(conn: sa.Connection, org_id: str) -> set[str]:
    """Returns the names of every environment of the organization's projects."""
    rows = conn.execute(
        sa.select(environments.c.name)
        .select_from(environments.join(projects, projects.c.id == environments.c.project_id))
        .where(projects.c.org_id == org_id)
        .distinct()
    )
    return {str(name) for name in rows.scalars()}


def active_webhooks(conn: sa.Connection, org_id: str) -> int:
    """Returns how many active webhooks the organization has."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(
                webhooks.c.org_id == org_id, webhooks.c.active.is_(True)
            )
        ).scalar_one()
    )


def checkpoint_lag(conn: sa.Connection) -> tuple[float | None, float | None]:
    """Returns when the latest checkpoint was signed, and when the oldest entry that no
    signed checkpoint covers yet (unsealed, or beyond the latest checkpoint) was written."""
    latest = conn.execute(
        sa.select(audit_checkpoints.c.timestamp, audit_checkpoints.c.tree_size)
        .order_by(audit_checkpoints.c.seq.desc())
        .limit(1)
    ).first()
    covered = int(latest[1]) if latest is not None else 0
    oldest = conn.execute(
        sa.select(sa.func.min(audit_log.c.timestamp)).where(
            sa.or_(audit_log.c.leaf_index.is_(None), audit_log.c.leaf_index >= covered)
        )
    ).scalar_one()
    return (float(latest[0]) if latest is not None else None), oldest
