"""Project and environment use cases. Deleting a project destroys its data keys."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.errors import Conflict
from coffer.domain.events import Event
from coffer.domain.models import DEFAULT_ENVIRONMENTS, CallContext, Environment, Project
from coffer.domain.names import validate_resource_name
from coffer.services.access import AccessGate
from coffer.services.keyring import Keyring
from coffer.services.lookup import require_environment, require_project
from coffer.storage import project_store
from coffer.storage.database import scrub_deleted


class ProjectService:
    """Creates, lists and deletes projects and their environments."""

    def __init__(
        self, engine: Engine, keyring: Keyring, audit: AuditWriter, gate: AccessGate
    ) -> None:
        self._engine = engine
        self._keyring = keyring
        self._audit = audit
        self._gate = gate

    def create(self, ctx: CallContext, name: str) -> tuple[Project, list[Environment]]:
        """Creates a project with data key v1 and the default environments. Raises
        InvalidInput for a bad name and Conflict when the name is taken."""
        validate_resource_name(name, field="name")
        self._gate.require(ctx, Action.PROJECT_MANAGE, project=name)
        now = time.time()
        try:
            with self._engine.begin() as conn:
                if project_store.find_project(conn, ctx.actor.org_id, name) is not None:
                    raise Conflict(f"project {name!r} already exists", field="name")
                project = project_store.insert_project(
                    conn, org_id=ctx.actor.org_id, name=name, now=now
                )
                self._keyring.create_data_key(conn, project, 1, now)
                envs = [
                    project_store.insert_environment(
                        conn, project_id=project.id, name=env, now=now + i * 1e-6
                    )
                    for i, env in enumerate(DEFAULT_ENVIRONMENTS)
                ]
                self._audit.append(
                    conn,
                    ctx,
                    Event.PROJECT_CREATED,
                    project=name,
                    metadata={"environments": ",".join(DEFAULT_ENVIRONMENTS)},
                )
        except sa.exc.IntegrityError:
            raise Conflict(f"project {name!r} already exists", field="name") from None
        return project, envs

    def list_projects(self, ctx: CallContext) -> list[Project]:
        """Returns the organization's projects the caller has some access to, by name."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        with self._engine.begin() as conn:
            found = project_store.list_projects(conn, ctx.actor.org_id)
            envs = {p.id: project_store.list_environments(conn, p.id) for p in found}
        return [
            p for p in found if self._gate.sees_project(ctx, p.name, (e.name for e in envs[p.id]))
        ]

    def get(self, ctx: CallContext, name: str) -> tuple[Project, list[Environment]]:
        """Returns a project and the environments the caller may read; raises NotFound, and
        AccessDenied when the caller has no access to any of it."""
        return self._visible(ctx, name)

    def _visible(self, ctx: CallContext, name: str) -> tuple[Project, list[Environment]]:
        self._gate.require(ctx, Action.PROJECT_VIEW, project=name)
        with self._engine.begin() as conn:
            project = require_project(conn, ctx.actor, name)
            envs = project_store.list_environments(conn, project.id)
        if not self._gate.sees_project(ctx, name, (e.name for e in envs)):
            self._gate.deny(
                ctx, Action.PROJECT_VIEW, f"no access to project {name} is granted", project=name
            )
        readable = [
            e
            for e in envs
            if self._gate.allows(ctx, Action.SECRET_READ, project=name, environment=e.name)
        ]
        return project, readable

    def delete(self, ctx: CallContext, name: str) -> None:
        """Deletes the project, every secret in it and its data keys (crypto-shredding)."""
        self._gate.require(ctx, Action.PROJECT_MANAGE, project=name)
        with self._engine.begin() as conn:
            project = require_project(conn, ctx.actor, name)
            project_store.delete_project(conn, project.id)
            self._keyring.forget(project)
            self._audit.append(
                conn,
                ctx,
                Event.PROJECT_DELETED,
                project=name,
                metadata={"data_keys_destroyed": project.key_version},
            )
        scrub_deleted(self._engine)

    def create_environment(self, ctx: CallContext, project: str, name: str) -> Environment:
        """Adds an environment; raises NotFound for the project, Conflict when it exists."""
        validate_resource_name(name, field="name")
        self._gate.require(ctx, Action.PROJECT_MANAGE, project=project)
        try:
            with self._engine.begin() as conn:
                found = require_project(conn, ctx.actor, project)
                if project_store.find_environment(conn, found.id, name) is not None:
                    raise Conflict(
                        f"environment {name!r} already exists in project {project!r}",
                        field="name",
                    )
                env = project_store.insert_environment(
                    conn, project_id=found.id, name=name, now=time.time()
                )
                self._audit.append(
                    conn, ctx, Event.ENVIRONMENT_CREATED, project=project, environment=name
                )
                return env
        except sa.exc.IntegrityError:
            raise Conflict(
                f"environment {name!r} already exists in project {project!r}", field="name"
            ) from None

    def list_environments(self, ctx: CallContext, project: str) -> list[Environment]:
        """Returns the project's environments the caller may read, in creation order."""
        return self._visible(ctx, project)[1]

    def delete_environment(self, ctx: CallContext, project: str, name: str) -> None:
        """Deletes the environment and every secret version in it."""
        self._gate.require(ctx, Action.PROJECT_MANAGE, project=project, environment=name)
        with self._engine.begin() as conn:
            found = require_project(conn, ctx.actor, project)
            env = require_environment(conn, found, name)
            project_store.delete_environment(conn, env.id)
            self._audit.append(
                conn, ctx, Event.ENVIRONMENT_DELETED, project=project, environment=name
            )
        scrub_deleted(self._engine)
