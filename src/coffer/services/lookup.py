"""Resolving project and environment names inside the caller's organization."""

from __future__ import annotations

import sqlalchemy as sa

from coffer.domain.errors import NotFound
from coffer.domain.models import Actor, Environment, Project
from coffer.domain.names import validate_resource_name
from coffer.storage import project_store


def require_project(conn: sa.Connection, actor: Actor, name: str) -> Project:
    """Returns the actor's organization's project ``name``; raises NotFound otherwise."""
    validate_resource_name(name, field="project")
    project = project_store.find_project(conn, actor.org_id, name)
    if project is None:
        raise NotFound(f"project {name!r} not found", field="project")
    return project


def require_environment(conn: sa.Connection, project: Project, name: str) -> Environment:
    """Returns the project's environment ``name``; raises NotFound otherwise."""
    validate_resource_name(name, field="environment")
    env = project_store.find_environment(conn, project.id, name)
    if env is None:
        raise NotFound(
            f"environment {name!r} not found in project {project.name!r}", field="environment"
        )
    return env


def require_scope(
    conn: sa.Connection, actor: Actor, project: str, environment: str
) -> tuple[Project, Environment]:
    """Returns (project, environment) by name; raises NotFound for either."""
    found = require_project(conn, actor, project)
    return found, require_environment(conn, found, environment)
