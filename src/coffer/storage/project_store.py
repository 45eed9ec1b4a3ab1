"""Projects, their wrapped data keys, and their environments."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from coffer.domain.models import Environment, Project
from coffer.storage.ids import new_id
from coffer.storage.tables import data_keys, environments, projects, secret_versions, secrets

_PROJECT_COLUMNS = (
    projects.c.id,
    projects.c.org_id,
    projects.c.name,
    projects.c.created_at,
    projects.c.key_version,
)


def _project(row: Any) -> Project:
    return Project(id=row[0], org_id=row[1], name=row[2], created_at=row[3], key_version=row[4])


def insert_project(conn: sa.Connection, *, org_id: str, name: str, now: float) -> Project:
    """Creates a project at data-key version 1 (the caller stores that key)."""
    project = Project(id=new_id(), org_id=org_id, name=name, created_at=now, key_version=1)
    conn.execute(
        sa.insert(projects).values(
            id=project.id, org_id=org_id, name=name, created_at=now, key_version=1
        )
    )
    return project


_FIND_PROJECT = sa.select(*_PROJECT_COLUMNS).where(
    projects.c.org_id == sa.bindparam("org_id"), projects.c.name == sa.bindparam("name")
)


def find_project(conn: sa.Connection, org_id: str, name: str) -> Project | None:
    """Returns the organization's project called ``name``, or None."""
    row = conn.execute(_FIND_PROJECT, {"org_id": org_id, "name": name}).first()
    return None if row is None else _project(row)


def all_projects(conn: sa.Connection) -> list[Project]:
    """Every project of every organization."""
    return [_project(row) for row in conn.execute(sa.select(*_PROJECT_COLUMNS))]


def list_projects(conn: sa.Connection, org_id: str) -> list[Project]:
    """Returns the organization's projects sorted by name."""
    rows = conn.execute(
        sa.select(*_PROJECT_COLUMNS).where(projects.c.org_id == org_id).order_by(projects.c.name)
    )
    return [_project(row) for row in rows]


def delete_project(conn: sa.Connection, project_id: str) -> None:
    """Deletes the project; its data keys, environments, secrets and versions cascade."""
    # Explicit deletes, innermost first, so the outcome does not depend on the driver
    # honouring ON DELETE CASCADE.
    env_ids = sa.select(environments.c.id).where(environments.c.project_id == project_id)
    secret_ids = sa.select(secrets.c.id).where(secrets.c.environment_id.in_(env_ids))

    conn.execute(sa.delete(secret_versions).where(secret_versions.c.secret_id.in_(secret_ids)))
    conn.execute(sa.delete(secrets).where(secrets.c.environment_id.in_(env_ids)))
    conn.execute(sa.delete(environments).where(environments.c.project_id == project_id))
    conn.execute(sa.delete(data_keys).where(data_keys.c.project_id == project_id))
    conn.execute(sa.delete(projects).where(projects.c.id == project_id))


def insert_data_key(
    conn: sa.Connection, *, project_id: str, version: int, wrapped_key: bytes, now: float
) -> None:
    """Stores a wrapped data key version."""
    conn.execute(
        sa.insert(data_keys).values(
            project_id=project_id, version=version, wrapped_key=wrapped_key, created_at=now
        )
    )


_WRAPPED_KEY = sa.select(data_keys.c.wrapped_key).where(
    data_keys.c.project_id == sa.bindparam("project_id"),
    data_keys.c.version == sa.bindparam("version"),
)


def get_wrapped_data_key(conn: sa.Connection, project_id: str, version: int) -> bytes | None:
    """Returns the wrapped data key for ``version``, or None when it was destroyed."""
    wrapped: bytes | None = conn.execute(
        _WRAPPED_KEY, {"project_id": project_id, "version": version}
    ).scalar_one_or_none()
    return wrapped


_ENV_COLUMNS = (
    environments.c.id,
    environments.c.project_id,
    environments.c.name,
    environments.c.created_at,
)


def insert_environment(
    conn: sa.Connection, *, project_id: str, name: str, now: float
) -> Environment:
    """Creates an environment in the project."""
    env = Environment(id=new_id(), project_id=project_id, name=name, created_at=now)
    conn.execute(
        sa.insert(environments).values(id=env.id, project_id=project_id, name=name, created_at=now)
    )
    return env


_FIND_ENVIRONMENT = sa.select(*_ENV_COLUMNS).where(
    environments.c.project_id == sa.bindparam("project_id"),
    environments.c.name == sa.bindparam("name"),
)


def find_environment(conn: sa.Connection, project_id: str, name: str) -> Environment | None:
    """Returns the project's environment called ``name``, or None."""
    row = conn.execute(_FIND_ENVIRONMENT, {"project_id": project_id, "name": name}).first()
    return None if row is None else Environment(*row)


def list_environments(conn: sa.Connection, project_id: str) -> list[Environment]:
    """Returns the project's environments in creation order."""
    rows = conn.execute(
        sa.select(*_ENV_COLUMNS)
        .where(environments.c.project_id == project_id)
        .order_by(environments.c.created_at, environments.c.id)
    )
    return [Environment(*row) for row in rows]


def delete_environment(conn: sa.Connection, environment_id: str) -> None:
    """Deletes the environment with all its secrets and versions."""

    secret_ids = sa.select(secrets.c.id).where(secrets.c.environment_id == environment_id)
    conn.execute(sa.delete(secret_versions).where(secret_versions.c.secret_id.in_(secret_ids)))
    conn.execute(sa.delete(secrets).where(secrets.c.environment_id == environment_id))
    conn.execute(sa.delete(environments).where(environments.c.id == environment_id))
