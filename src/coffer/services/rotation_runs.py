"""Running a secret's rotator (see ``services.rotators`` for who may, and
``domain.rotators`` for the contract every kind keeps).

Before anything reaches the source, a run checks that the caller may read the
environment of the rotator's ``connection`` secret (else AccessDenied naming it) and, in
one committed transaction, that the new version would keep the secret within its
environment's policy (else PolicyViolation), then claims the run: a compare-and-set marks
the rotator ``running`` unless another run of the same secret holds it (started less than
``STALE_RUN_SECONDS`` ago), which answers Conflict with nothing changed. The same
transaction reads the current value and, for kinds with one, the connection secret's value
(recorded as a ``secret.read`` with ``via`` ``rotator``: it leaves the service to reach the
source, whatever happens next).

The rotator then changes the credential with no database transaction open, and the new
version (comment ``rotated by the <kind> rotator``) is written with ``rotation.completed``
in one transaction. When the rotator fails, nothing is written but a ``rotation.failed``
entry (committed on its own), and the caller gets RotationFailed saying why. When the vault
write fails after the source changed, the rotator puts the old credential back first,
except when the secret got a new version meanwhile (Conflict): the source is then left
alone and RotationFailed says the vault was not updated. The final status (``succeeded``
or ``failed``, with ``last_error``) releases the claim on every path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.errors import CofferError, Conflict, NotFound, RotationFailed
from coffer.domain.events import Event, Result
from coffer.domain.models import CallContext, Environment, Project
from coffer.domain.references import SecretRef
from coffer.domain.rotators import (
    PendingRotation,
    Rotator,
    RotatorConfig,
    RotatorKind,
    connection_text,
)
from coffer.domain.secret_value import SecretValue
from coffer.services.access import AccessGate
from coffer.services.lookup import require_scope
from coffer.services.policy_enforcement import check_write
from coffer.services.secret_ops import SecretOps, secret_not_found
from coffer.storage import project_store, rotator_store, secret_store
from coffer.storage.secret_store import SecretRow, StoredVersion

SUCCEEDED = "succeeded"
FAILED = "failed"
# A run still marked running after this many seconds is taken to have died: a new run may
# claim the rotator.
STALE_RUN_SECONDS = 600.0


@dataclass(frozen=True)
class RotationOutcome:
    """A completed rotation: the version now current and when it was written."""

    project: str
    environment: str
    key: str
    kind: RotatorKind
    version: int
    rotated_at: float


@dataclass(frozen=True)
class _Read:
    """A stored version read for a run: where it lives, so its read can be recorded."""

    project: Project
    env: Environment
    key: str
    stored: StoredVersion


@dataclass
class _Claim:
    """This run's hold on the rotator (taken at ``claimed_at``); ``released`` once its
    final status is recorded."""

    claimed_at: float
    released: bool = False


@dataclass(frozen=True)
class _Plan:
    """What a run works from, read in one transaction."""

    project: Project
    env: Environment
    key: str
    secret_id: str
    version: int
    config: RotatorConfig
    current: SecretValue
    connection: SecretValue | None
    problem: str | None
    claim: _Claim

    @property
    def where(self) -> str:
        return f"{self.project.name}/{self.env.name}/{self.key}"


def live_secret(
    conn: sa.Connection, env: Environment, key: str, now: float, *, lock: bool = True
) -> SecretRow:
    """The unexpired secret ``key`` of ``env`` (its row locked unless ``lock`` is False);
    raises NotFound otherwise."""
    row = secret_store.find_secret(conn, env.id, key, for_update=lock)
    if row is None or row.limits.expired(now):
        raise secret_not_found(key, env.name)
    return row


def no_rotator(project: str, environment: str, key: str) -> NotFound:
    return NotFound(
        f"no rotator is configured for {project}/{environment}/{key}; set one with "
        "`coffer rotation rotator set`",
        field="key",
    )


class RotationRunner:
    """Runs rotators: ``rotators`` by kind, writing through ``ops``, checking the connection
    secret's read access through ``gate``."""

    def __init__(
        self,
        engine: Engine,
        ops: SecretOps,
        gate: AccessGate,
        rotators: Mapping[RotatorKind, Rotator],
        *,
        stale_after: float = STALE_RUN_SECONDS,
    ) -> None:
        self._engine = engine
        self._ops = ops
        self._gate = gate
        self._rotators = rotators
        self._stale_after = stale_after

    def run(self, ctx: CallContext, project: str, environment: str, key: str) -> RotationOutcome:
        """Runs the secret's rotator now (the caller has checked write access). Returns the
        new version. Raises NotFound for an unknown secret or one without a rotator,
        AccessDenied when the caller may not read the connection secret, PolicyViolation
        when the new version would break the environment's policy, Conflict when another
        run of the secret is under way (nothing changed then), and RotationFailed saying
        why when the credential could not be changed or stored."""
        config = self._config(ctx, project, environment, key)
        self._require_connection_read(ctx, f"{project}/{environment}/{key}", config)
        plan = self._plan(ctx, project, environment, key, config)
        try:
            return self._run_claimed(ctx, plan)
        finally:
            if not plan.claim.released:
                self._release(plan)

    def _run_claimed(self, ctx: CallContext, plan: _Plan) -> RotationOutcome:
        """Changes the credential and stores it, recording the outcome (which releases the
        claim)."""
        rotator = self._rotators.get(plan.config.kind)
        try:
            if plan.problem is not None:
                raise RotationFailed(plan.problem)
            if rotator is None:
                raise RotationFailed(f"no {plan.config.kind.value} rotator is available")
            pending = rotator.rotate(plan.current, plan.config, plan.connection)
        except RotationFailed as failure:
            self._record_failure(ctx, plan, failure.message)
            raise
        try:
            outcome = self._store(ctx, plan, pending)
        except Conflict:
            changed = self._changed_meanwhile(plan)
            self._record_failure(ctx, plan, changed.message)
            raise changed from None
        except (CofferError, sa.exc.SQLAlchemyError) as error:
            undone = self._undo(plan, pending, error)
            self._record_failure(ctx, plan, undone.message)
            raise undone from None
        pending.commit()
        return outcome

    def _config(self, ctx: CallContext, project: str, environment: str, key: str) -> RotatorConfig:
        """The secret's rotator configuration; raises NotFound without one."""
        with self._engine.begin() as conn:
            _, env = require_scope(conn, ctx.actor, project, environment)
            row = live_secret(conn, env, key, time.time(), lock=False)
            stored = rotator_store.find_rotator(conn, row.id)
        if stored is None:
            raise no_rotator(project, environment, key)
        return RotatorConfig.from_json(stored.kind, stored.config)

    def _require_connection_read(self, ctx: CallContext, where: str, config: RotatorConfig) -> None:
        """Records ``access.denied`` and raises AccessDenied naming the connection secret
        unless the caller may read its environment."""
        ref = config.connection
        if ref is None or AccessGate.allows(
            ctx, Action.SECRET_READ, project=ref.project, environment=ref.environment
        ):
            return
        self._gate.deny(
            ctx,
            Action.SECRET_READ,
            f"the rotator of {where} uses the connection secret {connection_text(ref)}, and "
            f"you may not read {ref.project}/{ref.environment}",
            project=ref.project,
            environment=ref.environment,
        )

    def _plan(
        self, ctx: CallContext, project: str, environment: str, key: str, config: RotatorConfig
    ) -> _Plan:
        """In one committed transaction: checks the policy, claims the run, and reads the
        current value and the connection secret's (whose read is recorded here, before it
        is used, since its value leaves the service to reach the source whatever happens
        next). Raises as ``run`` does, with nothing changed."""
        now = time.time()
        where = f"{project}/{environment}/{key}"
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live_secret(conn, env, key, now, lock=False)
            stored = rotator_store.find_rotator(conn, row.id)
            if stored is None:
                raise no_rotator(project, environment, key)
            if RotatorConfig.from_json(stored.kind, stored.config) != config:
                raise Conflict(f"the rotator of {where} changed as the run started; run it again")
            check_write(conn, found.org_id, env.name, row.id, key, None)
            if not rotator_store.claim_run(conn, row.id, now=now, stale_after=self._stale_after):
                raise Conflict(
                    f"a rotation of {where} is already running; wait for it to finish",
                    field="key",
                )
            version = secret_store.get_version(conn, row.id, row.current_version)
            if version is None:
                raise secret_not_found(key, environment)
            current = self._ops.cipher.open(conn, found, env, key, version)
            connection, read, problem = None, None, None
            if config.connection is not None:
                read = self._connection_version(conn, ctx, config.connection, now)
                if read is None:
                    problem = (
                        f"the connection secret {connection_text(config.connection)} does not exist"
                    )
                else:
                    connection = self._ops.read_stored(
                        conn, ctx, read.project, read.env, read.key, read.stored, via="rotator"
                    )
        return _Plan(
            project=found,
            env=env,
            key=key,
            secret_id=row.id,
            version=row.current_version,
            config=config,
            current=current,
            connection=connection,
            problem=problem,
            claim=_Claim(claimed_at=now),
        )

    @staticmethod
    def _connection_version(
        conn: sa.Connection, ctx: CallContext, ref: SecretRef, now: float
    ) -> _Read | None:
        """The current version of the connection secret, or None when it is gone."""
        found = project_store.find_project(conn, ctx.actor.org_id, ref.project)
        env = project_store.find_environment(conn, found.id, ref.environment) if found else None
        row = secret_store.find_secret(conn, env.id, ref.key) if env else None
        if found is None or env is None or row is None or row.limits.expired(now):
            return None
        stored = secret_store.get_version(conn, row.id, row.current_version)
        return _Read(found, env, ref.key, stored) if stored is not None else None

    def _store(self, ctx: CallContext, plan: _Plan, pending: PendingRotation) -> RotationOutcome:
        """Writes the new version with ``rotation.completed``, recording the run as
        succeeded (which releases the claim); raises Conflict when the secret changed since
        the plan was read."""
        now = time.time()
        kind = plan.config.kind.value
        with self._engine.begin() as conn:
            row = secret_store.find_secret(conn, plan.env.id, plan.key, for_update=True)
            if row is None or row.id != plan.secret_id or row.current_version != plan.version:
                raise Conflict(f"{plan.where} changed while it was being rotated")
            result = self._ops.write(
                conn,
                ctx,
                plan.project,
                plan.env,
                plan.key,
                pending.value,
                comment=f"rotated by the {kind} rotator",
                metadata={"rotator": kind},
            )
            self._ops.audit.append(
                conn,
                ctx,
                Event.ROTATION_COMPLETED,
                project=plan.project.name,
                environment=plan.env.name,
                key=plan.key,
                metadata={
                    "kind": kind,
                    "version": result.version,
                    "previous_version": plan.version,
                },
            )
            rotator_store.record_run(conn, plan.secret_id, status=SUCCEEDED, error=None, now=now)
        plan.claim.released = True
        return RotationOutcome(
            project=plan.project.name,
            environment=plan.env.name,
            key=plan.key,
            kind=plan.config.kind,
            version=result.version,
            rotated_at=now,
        )

    @staticmethod
    def _changed_meanwhile(plan: _Plan) -> RotationFailed:
        """The failure to report when the secret got another version while it was being
        rotated: the source keeps the new credential (putting the old one back blindly
        could break whatever was stored meanwhile), and the vault was not updated."""
        if plan.config.connection is None:
            return RotationFailed(
                f"{plan.where} changed while it was being rotated; the new value was not stored"
            )
        return RotationFailed(
            f"{plan.where} changed while it was being rotated: the password at the source was "
            "changed but the vault was not updated, so the vault's value may no longer work "
            "there; run the rotator again to set a new password and store it"
        )

    @staticmethod
    def _undo(plan: _Plan, pending: PendingRotation, error: Exception) -> RotationFailed:
        """Puts the old credential back after a failed vault write; returns the failure to
        report (the database's own message is left out: it may quote statements)."""
        reason = error.message if isinstance(error, CofferError) else type(error).__name__
        try:
            pending.rollback()
        except RotationFailed as undo_failed:
            return RotationFailed(
                f"{plan.where}: the vault could not store the new value ({reason}), and "
                f"{undo_failed.message}"
            )
        return RotationFailed(
            f"{plan.where}: the vault could not store the new value ({reason}); the old "
            "value was put back at the source and keeps working"
        )

    def _record_failure(self, ctx: CallContext, plan: _Plan, reason: str) -> None:
        """Commits ``rotation.failed`` on its own, so it stays although the rotation
        failed."""
        now = time.time()
        with self._engine.begin() as conn:
            self._ops.audit.append(
                conn,
                ctx,
                Event.ROTATION_FAILED,
                project=plan.project.name,
                environment=plan.env.name,
                key=plan.key,
                result=Result.FAILURE,
                metadata={
                    "kind": plan.config.kind.value,
                    "version": plan.version,
                    "error": reason[:500],
                },
            )
            rotator_store.record_run(conn, plan.secret_id, status=FAILED, error=reason, now=now)
        plan.claim.released = True

    def _release(self, plan: _Plan) -> None:
        """Ends this run's claim when the run stopped without recording its outcome (an
        unexpected error): the rotator is marked failed, unless another run holds it."""
        with self._engine.begin() as conn:
            rotator_store.release_run(
                conn,
                plan.secret_id,
                claimed_at=plan.claim.claimed_at,
                error="the run stopped before it finished",
                now=time.time(),
            )
        plan.claim.released = True
