"""Secret use cases: set, get, info, list, delete, history, rollback and limit changes.
Each owns its transaction."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.errors import CofferError, Contention, NotFound, ReasonRequired
from coffer.domain.events import Event
from coffer.domain.inventory import InventoryChange
from coffer.domain.models import (
    CallContext,
    Environment,
    Project,
    RevealedSecret,
    SecretInfo,
    SecretVersionInfo,
    WriteResult,
)
from coffer.domain.names import validate_key_name
from coffer.domain.read_limits import LimitChange, ReadLimits
from coffer.domain.secret_value import SecretValue
from coffer.services.access import AccessGate
from coffer.services.lookup import require_scope
from coffer.services.read_reasons import record_refusal
from coffer.services.retries import retry_on_conflict
from coffer.services.secret_ops import (
    Limits,
    SecretOps,
    secret_not_found,
    validate_write,
)
from coffer.services.secret_reads import check_version, live, read_secret
from coffer.storage import read_limits, secret_store
from coffer.storage.database import scrub_deleted
from coffer.storage.tables import secrets


@dataclass(frozen=True)
class SecretWrite:
    """One plain write of a new version, for ``SecretService.set_many``."""

    ctx: CallContext
    project: str
    environment: str
    key: str
    value: SecretValue = field(repr=False)
    comment: str | None = None


class SecretService:
    """Reads and writes the secrets of one environment at a time."""

    def __init__(self, engine: Engine, ops: SecretOps, limits: Limits, gate: AccessGate) -> None:
        self._engine = engine
        self._ops = ops
        self._limits = limits
        self._gate = gate

    def set(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        key: str,
        value: SecretValue,
        *,
        comment: str | None = None,
        limits: ReadLimits | None = None,
        inventory: InventoryChange | None = None,
    ) -> WriteResult:
        """Writes a new version of ``key``, with a TTL and read limit when ``limits`` has
        them, and the metadata change ``inventory`` (see ``SecretOps.write``). Raises
        InvalidInput/TooLarge for bad input, PolicyViolation when the secret would break its
        environment's policy, and NotFound for an unknown project or environment; changes
        nothing then."""
        validate_write(key, value, comment, self._limits)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            return self._ops.write(
                conn,
                ctx,
                found,
                env,
                key,
                value,
                comment=comment,
                limits=limits,
                inventory=inventory,
            )

    def set_many(self, writes: Sequence[SecretWrite]) -> list[WriteResult | CofferError]:
        """Writes several plain new versions (no limits) in one transaction, each in a
        savepoint of its own: each write's result, or the error that refused it (that write
        then changed nothing, and the others are unaffected). The group commit of the hot
        write path: one COMMIT for all the writes that arrived together. Rows are locked in
        key order, so two batches cannot deadlock on each other; a conflict the database
        still reports runs the batch again (Contention for every write when it persists)."""
        outcomes: list[WriteResult | CofferError | None] = [None] * len(writes)
        allowed: list[int] = []
        for index, write in enumerate(writes):
            try:
                validate_write(write.key, write.value, write.comment, self._limits)
                self._gate.require(
                    write.ctx,
                    Action.SECRET_WRITE,
                    project=write.project,
                    environment=write.environment,
                )
                allowed.append(index)
            except CofferError as error:
                outcomes[index] = error
        allowed.sort(key=lambda i: (writes[i].project, writes[i].environment, writes[i].key))
        if allowed:
            try:
                written = self._write_batch([writes[index] for index in allowed])
            except Contention as error:
                written = [error] * len(allowed)
            for index, outcome in zip(allowed, written, strict=True):
                outcomes[index] = outcome
        return [outcome for outcome in outcomes if outcome is not None]

    @retry_on_conflict
    def _write_batch(self, writes: Sequence[SecretWrite]) -> list[WriteResult | CofferError]:
        scopes: dict[tuple[str, str, str], tuple[Project, Environment] | CofferError] = {}
        with self._engine.begin() as conn:
            return [self._write_in_savepoint(conn, write, scopes) for write in writes]

    def _write_in_savepoint(
        self,
        conn: sa.Connection,
        write: SecretWrite,
        scopes: dict[tuple[str, str, str], tuple[Project, Environment] | CofferError],
    ) -> WriteResult | CofferError:
        """One write of a batch; its own refusal rolls back only its savepoint. A database
        error other than a refusal (a deadlock, a lost connection) ends the whole batch.
        ``scopes`` remembers the project and environment lookups of this transaction (the
        writes of a batch mostly share them)."""
        where = (write.ctx.actor.org_id, write.project, write.environment)
        scope = scopes.get(where)
        if scope is None:
            try:
                scope = require_scope(conn, write.ctx.actor, write.project, write.environment)
            except CofferError as error:
                scope = error
            scopes[where] = scope
        if isinstance(scope, CofferError):
            return scope
        found, env = scope
        savepoint = conn.begin_nested()
        try:
            result = self._ops.write(
                conn, write.ctx, found, env, write.key, write.value, comment=write.comment
            )
        except CofferError as error:
            savepoint.rollback()
            return error
        savepoint.commit()
        return result

    @retry_on_conflict
    def get(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        key: str,
        *,
        version: int | None = None,
        expand: bool = False,
    ) -> RevealedSecret:
        """Returns the current (or given) version with its value, recording ``secret.read``
        (with the caller's stated reason). A limited secret's read is counted (and may be
        its last: it is then burned or sealed in the same transaction). Raises NotFound for
        an unknown, burned or expired secret or an unknown version, Gone for a sealed one,
        InvalidInput for a bad reference, ReasonRequired (recorded as ``access.denied``)
        when the policy of this environment, or of one a reference reads, wants a reason
        and none was given; a failed read counts nothing."""
        validate_key_name(key)
        check_version(key, version)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        try:
            return read_secret(
                self._engine,
                self._ops,
                ctx,
                project,
                environment,
                key,
                version=version,
                expand=expand,
            )
        except ReasonRequired as refusal:
            record_refusal(
                self._engine,
                self._ops.audit,
                ctx,
                refusal,
                Action.SECRET_READ,
                project=project,
                environment=environment,
            )
            raise

    def info(self, ctx: CallContext, project: str, environment: str, key: str) -> SecretInfo:
        """Returns the secret's metadata and read limits without reading it (``HEAD``):
        nothing is counted or recorded. Raises NotFound for an unknown, burned or expired
        secret; a sealed one is returned with status ``sealed``."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        with self._engine.begin() as conn:
            _, env = require_scope(conn, ctx.actor, project, environment)
            row = live(secret_store.find_secret(conn, env.id, key), time.time())
            if row is None:
                raise secret_not_found(key, environment)
            return SecretInfo(
                key=key,
                version=row.current_version,
                created_at=row.created_at,
                updated_at=row.updated_at,
                limits=row.limits,
            )

    def change_limits(
        self, ctx: CallContext, project: str, environment: str, key: str, change: LimitChange
    ) -> SecretInfo:
        """Changes the secret's TTL, read limit or burn/seal choice, or resets its read count
        (unsealing it); needs write access. Records ``secret.limits_changed``. Raises
        NotFound for an unknown, burned or expired secret, InvalidInput for a limit at or
        below the reads already counted."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        now = time.time()
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live(secret_store.find_secret(conn, env.id, key, for_update=True), now)
            if row is None:
                raise secret_not_found(key, environment)
            after = change.applied_to(row.limits, now)
            read_limits.update_limits(conn, secrets, row.id, **change.column_values(now))
            self._ops.audit.append(
                conn,
                ctx,
                Event.SECRET_LIMITS_CHANGED,
                project=found.name,
                environment=env.name,
                key=key,
                metadata=change.audit_fields(),
            )
            return SecretInfo(
                key=key,
                version=row.current_version,
                created_at=row.created_at,
                updated_at=row.updated_at,
                limits=after,
            )

    def list_keys(self, ctx: CallContext, project: str, environment: str) -> list[SecretInfo]:
        """Returns the environment's keys and versions, never values."""
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        with self._engine.begin() as conn:
            _, env = require_scope(conn, ctx.actor, project, environment)
            return secret_store.list_secrets(conn, env.id, time.time())

    def delete(self, ctx: CallContext, project: str, environment: str, key: str) -> int:
        """Destroys the secret and all its versions; returns how many versions were destroyed.
        Raises NotFound when it does not exist."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live(secret_store.find_secret(conn, env.id, key, for_update=True), time.time())
            if row is None:
                raise secret_not_found(key, environment)
            secret_store.delete_secret(conn, row.id)
            self._ops.audit.append(
                conn,
                ctx,
                Event.SECRET_DELETED,
                project=found.name,
                environment=env.name,
                key=key,
                metadata={"versions_destroyed": row.current_version},
            )
        scrub_deleted(self._engine)
        return row.current_version

    def history(
        self, ctx: CallContext, project: str, environment: str, key: str
    ) -> list[SecretVersionInfo]:
        """Returns every version's metadata (author, time, comment), newest first."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        with self._engine.begin() as conn:
            _, env = require_scope(conn, ctx.actor, project, environment)
            row = live(secret_store.find_secret(conn, env.id, key), time.time())
            if row is None:
                raise secret_not_found(key, environment)
            return secret_store.version_history(conn, row.id)

    def rollback(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        key: str,
        *,
        version: int,
        comment: str | None = None,
    ) -> WriteResult:
        """Writes a new version carrying the value of ``version``. Raises NotFound when the
        secret or version does not exist."""
        validate_key_name(key)
        check_version(key, version)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = live(secret_store.find_secret(conn, env.id, key, for_update=True), time.time())
            if row is None:
                raise secret_not_found(key, environment)
            stored = secret_store.get_version(conn, row.id, version)
            if stored is None:
                raise NotFound(f"secret {key!r} has no version {version}", field="version")
            value = self._ops.read_stored(conn, ctx, found, env, key, stored, via="rollback")
            return self._ops.write(
                conn,
                ctx,
                found,
                env,
                key,
                value,
                comment=comment or f"rollback to version {version}",
                metadata={"rolled_back_to": version},
            )
