"""Rotators: change a credential at its source and store the new value (see
``domain.rotators`` for the kinds and their contract).

Configuring a secret's rotator takes the admin role and write access to the secret; a
``postgresql`` rotator's ``connection`` must name a vault secret the configuring admin may
read (it holds the admin connection URL; the configuration only names it). Running one
(``rotate``) takes write access to the secret and, for a rotator with a ``connection``, read
access to that secret's environment; one run of a secret at a time.

"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.errors import InvalidInput
from coffer.domain.events import Event
from coffer.domain.models import CallContext
from coffer.domain.names import validate_key_name
from coffer.domain.references import SecretRef
from coffer.domain.rotators import Rotator, RotatorConfig, connection_text, parse_rotator_config
from coffer.services.access import AccessGate
from coffer.services.lookup import require_scope
from coffer.services.rotation_runs import RotationOutcome, RotationRunner, live_secret, no_rotator
from coffer.services.rotator_postgres import PostgresRotator
from coffer.services.rotator_random import RandomRotator
from coffer.services.secret_ops import SecretOps
from coffer.storage import project_store, rotator_store, secret_store
from coffer.storage.rotator_store import StoredRotator


@dataclass(frozen=True)
class RotatorInfo:
    """A secret's rotator: its configuration, who set it and when, and its last run."""

    project: str
    environment: str
    key: str
    config: RotatorConfig
    created_at: float
    created_by: str
    last_run_at: float | None
    last_status: str | None
    last_error: str | None


def default_rotators() -> list[Rotator]:
    """The built-in rotators: random values and PostgreSQL role passwords."""
    return [RandomRotator(), PostgresRotator()]


def _info(project: str, environment: str, key: str, stored: StoredRotator) -> RotatorInfo:
    return RotatorInfo(
        project=project,
        environment=environment,
        key=key,
        config=RotatorConfig.from_json(stored.kind, stored.config),
        created_at=stored.created_at,
        created_by=stored.created_by,
        last_run_at=stored.last_run_at,
        last_status=stored.last_status,
        last_error=stored.last_error,
    )


class RotatorService:
    """Configures rotators and runs them (``rotators``: the kinds available, the built-in
    ones by default)."""

    def __init__(
        self,
        engine: Engine,
        ops: SecretOps,
        gate: AccessGate,
        rotators: Iterable[Rotator] | None = None,
    ) -> None:
        self._engine = engine
        self._ops = ops
        self._gate = gate
        chosen = default_rotators() if rotators is None else rotators
        self._runner = RotationRunner(engine, ops, gate, {r.kind: r for r in chosen})

    def configure(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        key: str,
        spec: Mapping[str, object],
    ) -> RotatorInfo:
        """Creates or replaces the secret's rotator from ``spec`` (see
        ``parse_rotator_config``), recording ``rotation.configured``. Needs the admin role
        and write access to the secret. Raises InvalidInput naming the field for a bad spec
        and for a ``connection`` the caller may not read or that does not exist, NotFound
        for an unknown secret; nothing changes then."""
        validate_key_name(key)
        config = parse_rotator_config(spec)
        self._gate.require(ctx, Action.PROJECT_MANAGE)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        ref = config.connection
        if ref is not None and not AccessGate.allows(
            ctx, Action.SECRET_READ, project=ref.project, environment=ref.environment
        ):
            raise InvalidInput(
                f"connection names a secret in {ref.project}/{ref.environment}, which you may "
                "not read",
                field="connection",
            )
        now = time.time()
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live_secret(conn, env, key, now)
            if ref is not None:
                self._check_connection(conn, ctx, ref, row.id, now)
            stored = rotator_store.save_rotator(
                conn, row.id, config.kind.value, config.to_json(), by=ctx.actor.id, now=now
            )
            self._ops.audit.append(
                conn,
                ctx,
                Event.ROTATION_CONFIGURED,
                project=found.name,
                environment=env.name,
                key=key,
                metadata={"kind": config.kind.value, **config.to_json()},
            )
        return _info(found.name, env.name, key, stored)

    @staticmethod
    def _check_connection(
        conn: sa.Connection, ctx: CallContext, ref: SecretRef, target_id: str, now: float
    ) -> None:
        """Raises InvalidInput naming ``connection`` unless it names an existing secret
        other than the one being configured."""
        text = connection_text(ref)
        missing = InvalidInput(f"connection names {text}, which does not exist", field="connection")
        found = project_store.find_project(conn, ctx.actor.org_id, ref.project)
        env = project_store.find_environment(conn, found.id, ref.environment) if found else None
        row = secret_store.find_secret(conn, env.id, ref.key) if env else None
        if row is None or row.limits.expired(now):
            raise missing
        if row.id == target_id:
            raise InvalidInput(
                "connection must name another secret than the one rotated", field="connection"
            )

    def show(self, ctx: CallContext, project: str, environment: str, key: str) -> RotatorInfo:
        """Returns the secret's rotator (read access needed). Raises NotFound for an unknown
        secret or one without a rotator."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live_secret(conn, env, key, time.time(), lock=False)
            stored = rotator_store.find_rotator(conn, row.id)
        if stored is None:
            raise no_rotator(project, environment, key)
        return _info(found.name, env.name, key, stored)

    def remove(self, ctx: CallContext, project: str, environment: str, key: str) -> RotatorInfo:
        """Removes the secret's rotator, recording ``rotation.configured`` with ``removed``;
        returns what it was. Needs the admin role and write access. Raises NotFound for an
        unknown secret or one without a rotator."""
        validate_key_name(key)
        self._gate.require(ctx, Action.PROJECT_MANAGE)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live_secret(conn, env, key, time.time())
            stored = rotator_store.find_rotator(conn, row.id)
            if stored is None:
                raise no_rotator(project, environment, key)
            rotator_store.delete_rotator(conn, row.id)
            self._ops.audit.append(
                conn,
                ctx,
                Event.ROTATION_CONFIGURED,
                project=found.name,
                environment=env.name,
                key=key,
                metadata={"kind": stored.kind, "removed": True},
            )
        return _info(found.name, env.name, key, stored)

    def rotate(self, ctx: CallContext, project: str, environment: str, key: str) -> RotationOutcome:
        """Runs the secret's rotator now (write access needed, and read access to its
        connection secret; see ``services.rotation_runs``). Returns the new version. Raises
        NotFound for an unknown secret or one without a rotator, AccessDenied,
        PolicyViolation, Conflict while another run of the secret is under way, and
        RotationFailed saying why when the credential could not be changed or stored."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        return self._runner.run(ctx, project, environment, key)
