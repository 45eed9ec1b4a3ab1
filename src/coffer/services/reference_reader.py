"""Expands ``${...}`` references at read time, auditing every value a reference reads (and
counting it against the referenced secret's read limit)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from coffer.domain.access import Action
from coffer.domain.errors import NotFound
from coffer.domain.models import CallContext, Environment, Project
from coffer.domain.references import SecretRef, expand_value
from coffer.domain.secret_value import SecretValue
from coffer.services.access import AccessGate
from coffer.services.secret_ops import SecretOps
from coffer.storage import project_store, secret_store


class AuditedReferenceSource:
    """A ``ReferenceSource`` over one transaction, limited to the caller's organization."""

    def __init__(self, conn: sa.Connection, ctx: CallContext, ops: SecretOps) -> None:
        self._conn = conn
        self._ctx = ctx
        self._ops = ops
        self._projects: dict[str, Project | None] = {}
        self._envs: dict[tuple[str, str], Environment | None] = {}

    def _project(self, name: str) -> Project | None:
        if name not in self._projects:
            self._projects[name] = project_store.find_project(
                self._conn, self._ctx.actor.org_id, name
            )
        return self._projects[name]

    def _environment(self, project: str, environment: str) -> Environment | None:
        found = self._project(project)
        if found is None:
            return None
        if (project, environment) not in self._envs:
            self._envs[(project, environment)] = project_store.find_environment(
                self._conn, found.id, environment
            )
        return self._envs[(project, environment)]

    def has_project(self, project: str) -> bool:
        """True when the caller's organization has this project."""
        return self._project(project) is not None

    def has_environment(self, project: str, environment: str) -> bool:
        """True when the project exists and has this environment."""
        return self._environment(project, environment) is not None

    def value_of(self, ref: SecretRef) -> str | None:
        """Returns the current plaintext of the referenced secret (audited, and counted when
        it is limited), or None when it does not exist, has expired, is sealed or the caller
        may not read it (these look alike)."""
        if not AccessGate.allows(
            self._ctx, Action.SECRET_READ, project=ref.project, environment=ref.environment
        ):
            return None
        project = self._project(ref.project)
        env = self._environment(ref.project, ref.environment)
        if project is None or env is None:
            return None
        row = secret_store.find_secret(self._conn, env.id, ref.key)
        if row is None or row.limits.expired(time.time()):
            return None
        if row.limits.limited:
            try:
                value, _ = self._ops.reveal_current(
                    self._conn, self._ctx, project, env, row, via="reference"
                )
            except NotFound:
                return None
            return value.reveal()
        stored = secret_store.get_version(self._conn, row.id, row.current_version)
        if stored is None:
            return None
        value = self._ops.read_stored(
            self._conn, self._ctx, project, env, ref.key, stored, via="reference"
        )
        return value.reveal()


def expand_secret(
    conn: sa.Connection,
    ctx: CallContext,
    ops: SecretOps,
    project: Project,
    env: Environment,
    key: str,
    value: SecretValue,
) -> SecretValue:
    """Returns ``value`` with its references expanded; raises InvalidInput on a missing
    reference or a cycle."""
    if "${" not in value.reveal():
        return value
    source = AuditedReferenceSource(conn, ctx, ops)
    origin = SecretRef(project=project.name, environment=env.name, key=key)
    return SecretValue(expand_value(value.reveal(), origin=origin, source=source))
