"""Secrets and their encrypted versions. Values are only ever ciphertext here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.domain.models import Environment, Project, SecretInfo, SecretVersionInfo
from coffer.domain.read_limits import NO_LIMITS, LimitState
from coffer.storage.database import dialect_insert
from coffer.storage.ids import new_id
from coffer.storage.read_limits import (
    LIMIT_WIDTH,
    is_limited,
    limit_columns,
    limit_state,
    not_expired,
)
from coffer.storage.tables import data_keys, environments, projects, secret_versions, secrets


@dataclass(frozen=True)
class SecretRow:
    """A secret's row: its id, current version and read limits."""

    id: str
    key: str
    current_version: int
    created_at: float
    updated_at: float
    limits: LimitState = NO_LIMITS


@dataclass(frozen=True)
class StoredVersion:
    """One encrypted version as stored."""

    version: int
    ciphertext: bytes
    key_version: int
    created_at: float
    comment: str | None


_SECRET_COLUMNS = (
    secrets.c.id,
    secrets.c.key,
    secrets.c.current_version,
    secrets.c.created_at,
    secrets.c.updated_at,
    *limit_columns(secrets),
)


def _secret_row(row: Any) -> SecretRow:
    values = tuple(row)
    id_, key, current_version, created_at, updated_at = values[:5]
    return SecretRow(
        id=id_,
        key=key,
        current_version=current_version,
        created_at=created_at,
        updated_at=updated_at,
        limits=limit_state(values[5:]),
    )


_FIND_SECRET = sa.select(*_SECRET_COLUMNS).where(
    secrets.c.environment_id == sa.bindparam("environment_id"),
    secrets.c.key == sa.bindparam("key"),
)
_FIND_SECRET_FOR_UPDATE = _FIND_SECRET.with_for_update()


def find_secret(
    conn: sa.Connection, environment_id: str, key: str, *, for_update: bool = False
) -> SecretRow | None:
    """Returns the secret ``key`` of the environment, or None; an expired secret is still
    returned (callers destroy it). ``for_update`` locks the row (PostgreSQL) so concurrent
    writers number versions one after another."""
    query = _FIND_SECRET_FOR_UPDATE if for_update else _FIND_SECRET
    row = conn.execute(query, {"environment_id": environment_id, "key": key}).first()
    return None if row is None else _secret_row(row)


def list_secrets(conn: sa.Connection, environment_id: str, now: float) -> list[SecretInfo]:
    """Returns the environment's unexpired secrets (metadata and limits), sorted by key."""
    rows = conn.execute(
        sa.select(
            secrets.c.key,
            secrets.c.current_version,
            secrets.c.created_at,
            secrets.c.updated_at,
            *limit_columns(secrets),
        )
        .where(secrets.c.environment_id == environment_id, not_expired(secrets, now))
        .order_by(secrets.c.key)
    )
    return [
        SecretInfo(
            key=row[0],
            version=row[1],
            created_at=row[2],
            updated_at=row[3],
            limits=limit_state(tuple(row[4:])),
        )
        for row in rows
    ]


def limited_secrets(conn: sa.Connection, environment_id: str) -> dict[str, SecretRow]:
    """Returns the environment's secrets with a TTL or read limit, keyed by secret key."""
    rows = conn.execute(
        sa.select(*_SECRET_COLUMNS).where(
            secrets.c.environment_id == environment_id, is_limited(secrets)
        )
    )
    return {row.key: _secret_row(row) for row in rows}


def expired_secrets(
    conn: sa.Connection, now: float, limit: int, *, org_id: str | None = None
) -> list[ExpiredSecret]:
    """Returns up to ``limit`` secrets past their TTL (in one organization, or all), oldest
    first."""
    query = (
        sa.select(
            secrets.c.id,
            secrets.c.key,
            secrets.c.current_version,
            secrets.c.expires_at,
            projects.c.org_id,
            projects.c.name,
            environments.c.name,
        )
        .join(environments, environments.c.id == secrets.c.environment_id)
        .join(projects, projects.c.id == environments.c.project_id)
        .where(secrets.c.expires_at <= now)
    )
    if org_id is not None:
        query = query.where(projects.c.org_id == org_id)
    rows = conn.execute(query.order_by(secrets.c.expires_at).limit(limit))
    return [ExpiredSecret(*row) for row in rows]


@dataclass(frozen=True)
class ExpiredSecret:
    """A vault secret past its TTL, with where it lives (for the pruner's audit entry)."""

    id: str
    key: str
    current_version: int
    expires_at: float
    org_id: str
    project: str
    environment: str

    @classmethod
    def of(cls, row: SecretRow, project: Project, environment: Environment) -> ExpiredSecret:
        """The expired secret ``row`` of ``project``/``environment``."""
        return cls(
            id=row.id,
            key=row.key,
            current_version=row.current_version,
            expires_at=row.limits.expires_at or 0.0,
            org_id=project.org_id,
            project=project.name,
            environment=environment.name,
        )


def ensure_secret(conn: sa.Connection, *, environment_id: str, key: str, now: float) -> SecretRow:
    """Returns the secret row, locked for update, creating it at version 0 when absent.

    The insert ignores a conflict, so concurrent first writes of one key all end up locking
    the same row and numbering versions one after another instead of failing."""
    existing = find_secret(conn, environment_id, key, for_update=True)
    if existing is not None:
        return existing
    insert = dialect_insert(conn)(secrets).values(
        id=new_id(),
        environment_id=environment_id,
        key=key,
        current_version=0,
        created_at=now,
        updated_at=now,
    )
    conn.execute(insert.on_conflict_do_nothing(index_elements=["environment_id", "key"]))
    row = find_secret(conn, environment_id, key, for_update=True)
    assert row is not None
    return row


def insert_version(
    conn: sa.Connection,
    *,
    secret_id: str,
    version: int,
    ciphertext: bytes,
    key_version: int,
    author_id: str,
    author_kind: str,
    comment: str | None,
    now: float,
) -> None:
    """Appends an encrypted version and makes it current."""
    conn.execute(
        _INSERT_VERSION,
        {
            "secret_id": secret_id,
            "version": version,
            "ciphertext": ciphertext,
            "key_version": key_version,
            "author_id": author_id,
            "author_kind": author_kind,
            "comment": comment,
            "created_at": now,
        },
    )
    conn.execute(_MAKE_CURRENT, {"which": secret_id, "current": version, "at": now})


# Built once: the write path runs them on every write, and building a statement costs more
# than executing it on SQLite.
_INSERT_VERSION = sa.insert(secret_versions)
_MAKE_CURRENT = (
    sa.update(secrets)
    .where(secrets.c.id == sa.bindparam("which"))
    .values(current_version=sa.bindparam("current"), updated_at=sa.bindparam("at"))
)


_VERSION_QUERY = sa.select(
    secret_versions.c.version,
    secret_versions.c.ciphertext,
    secret_versions.c.key_version,
    secret_versions.c.created_at,
    secret_versions.c.comment,
).where(
    secret_versions.c.secret_id == sa.bindparam("secret_id"),
    secret_versions.c.version == sa.bindparam("version"),
)


def get_version(conn: sa.Connection, secret_id: str, version: int) -> StoredVersion | None:
    """Returns one stored version, or None."""
    row = conn.execute(_VERSION_QUERY, {"secret_id": secret_id, "version": version}).first()
    return None if row is None else StoredVersion(*row)


def current_versions(
    conn: sa.Connection, environment_id: str, now: float
) -> dict[str, StoredVersion]:
    """Returns every unexpired secret's current version in the environment, keyed by secret
    key."""
    rows = conn.execute(
        sa.select(
            secrets.c.key,
            secret_versions.c.version,
            secret_versions.c.ciphertext,
            secret_versions.c.key_version,
            secret_versions.c.created_at,
            secret_versions.c.comment,
        )
        .join(
            secret_versions,
            sa.and_(
                secret_versions.c.secret_id == secrets.c.id,
                secret_versions.c.version == secrets.c.current_version,
            ),
        )
        .where(secrets.c.environment_id == environment_id, not_expired(secrets, now))
    )
    return {row[0]: StoredVersion(*row[1:]) for row in rows}


def version_history(conn: sa.Connection, secret_id: str) -> list[SecretVersionInfo]:
    """Returns every version's metadata, newest first."""
    rows = conn.execute(
        sa.select(
            secret_versions.c.version,
            secret_versions.c.author_id,
            secret_versions.c.author_kind,
            secret_versions.c.created_at,
            secret_versions.c.comment,
        )
        .where(secret_versions.c.secret_id == secret_id)
        .order_by(secret_versions.c.version.desc())
    )
    return [SecretVersionInfo(*row) for row in rows]


def delete_secret(conn: sa.Connection, secret_id: str) -> int:
    """Destroys the secret and every one of its versions; returns how many versions."""
    versions = conn.execute(
        sa.delete(secret_versions).where(secret_versions.c.secret_id == secret_id)
    ).rowcount
    conn.execute(sa.delete(secrets).where(secrets.c.id == secret_id))
    return int(versions)


@dataclass(frozen=True)
class ReadBundle:
    """Everything one read needs, fetched in one query: where the secret lives, the stored
    version, its wrapped data key (None when the key was destroyed), the secret's id and its
    read limits."""

    project: Project
    environment: Environment
    stored: StoredVersion
    wrapped_key: bytes | None
    secret_id: str
    limits: LimitState
    updated_at: float


def _read_query() -> sa.Select[Any]:
    version = sa.func.coalesce(sa.bindparam("version", type_=sa.Integer), secrets.c.current_version)
    return (
        sa.select(
            projects.c.id,
            projects.c.created_at,
            projects.c.key_version,
            environments.c.id,
            environments.c.created_at,
            secret_versions.c.version,
            secret_versions.c.ciphertext,
            secret_versions.c.key_version,
            secret_versions.c.created_at,
            secret_versions.c.comment,
            data_keys.c.wrapped_key,
            secrets.c.id,
            *limit_columns(secrets),
            secrets.c.updated_at,
        )
        .select_from(projects)
        .join(environments, environments.c.project_id == projects.c.id)
        .join(secrets, secrets.c.environment_id == environments.c.id)
        .join(
            secret_versions,
            sa.and_(
                secret_versions.c.secret_id == secrets.c.id, secret_versions.c.version == version
            ),
        )
        .outerjoin(
            data_keys,
            sa.and_(
                data_keys.c.project_id == projects.c.id,
                data_keys.c.version == secret_versions.c.key_version,
            ),
        )
        .where(
            projects.c.org_id == sa.bindparam("org_id"),
            projects.c.name == sa.bindparam("project"),
            environments.c.name == sa.bindparam("environment"),
            secrets.c.key == sa.bindparam("key"),
        )
    )


READ_QUERY = _read_query()


def read_bundle_from_row(
    row: tuple[Any, ...], *, org_id: str, project: str, environment: str
) -> ReadBundle:
    """Builds a ReadBundle from one row of ``READ_QUERY``."""
    return ReadBundle(
        project=Project(
            id=row[0], org_id=org_id, name=project, created_at=row[1], key_version=row[2]
        ),
        environment=Environment(id=row[3], project_id=row[0], name=environment, created_at=row[4]),
        stored=StoredVersion(*row[5:10]),
        wrapped_key=row[10],
        secret_id=row[11],
        limits=limit_state(row[12 : 12 + LIMIT_WIDTH]),
        updated_at=row[12 + LIMIT_WIDTH],
    )


def fetch_for_read(
    conn: sa.Connection,
    *,
    org_id: str,
    project: str,
    environment: str,
    key: str,
    version: int | None,
) -> ReadBundle | None:
    """Returns the read bundle in one round trip, or None when any part is missing (the
    caller then finds out which, for the error message)."""
    row = conn.execute(
        READ_QUERY,
        {
            "org_id": org_id,
            "project": project,
            "environment": environment,
            "key": key,
            "version": version,
        },
    ).first()
    if row is None:
        return None
    return read_bundle_from_row(tuple(row), org_id=org_id, project=project, environment=environment)
