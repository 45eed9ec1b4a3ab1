"""Moving secrets in bulk: import, export, diff and promote between environments."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.access_requests import Operation
from coffer.domain.errors import ApprovalRequired, InvalidInput, NotFound, ReasonRequired
from coffer.domain.events import Event
from coffer.domain.models import (
    ActorKind,
    CallContext,
    Environment,
    EnvironmentDiff,
    ImportReport,
    Project,
    PromotionReport,
)
from coffer.domain.names import validate_key_name
from coffer.domain.secret_value import SecretValue
from coffer.services.access import AccessGate
from coffer.services.approvals import require_approval, validate_approval_id
from coffer.services.lookup import require_environment, require_project, require_scope
from coffer.services.read_reasons import reason_required, record_refusal
from coffer.services.reference_reader import expand_secret
from coffer.services.retries import retry_on_conflict
from coffer.services.secret_ops import Limits, SecretOps, validate_write
from coffer.storage import secret_store
from coffer.storage.database import serialize_counted_reads
from coffer.storage.policy_store import policy_for


class TransferService:
    """Bulk operations; each is one transaction, so it happens whole or not at all."""

    def __init__(self, engine: Engine, ops: SecretOps, limits: Limits, gate: AccessGate) -> None:
        self._engine = engine
        self._ops = ops
        self._limits = limits
        self._gate = gate

    def _plaintexts(
        self, conn: sa.Connection, project: Project, env: Environment
    ) -> dict[str, SecretValue]:
        """Decrypts every current value of the environment without auditing or counting
        reads (comparisons; nothing leaves the service)."""
        return {
            key: self._ops.cipher.open(conn, project, env, key, stored)
            for key, stored in secret_store.current_versions(conn, env.id, time.time()).items()
        }

    def import_secrets(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        values: Mapping[str, SecretValue],
        *,
        comment: str | None = None,
    ) -> ImportReport:
        """Writes every key; identical values are left alone. Validates everything first, so
        one bad key or value rejects the whole import and changes nothing."""
        if not values:
            raise InvalidInput("the import contains no secrets", field="secrets")
        for key, value in values.items():
            validate_write(key, value, comment, self._limits)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        report = ImportReport()
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            for key in sorted(values):
                result = self._ops.write(
                    conn,
                    ctx,
                    found,
                    env,
                    key,
                    values[key],
                    comment=comment,
                    skip_unchanged=True,
                    metadata={"via": "import"},
                )
                getattr(report, result.outcome).append(key)
        return report

    @retry_on_conflict
    def export(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        *,
        expand: bool = True,
        approval: str | None = None,
    ) -> dict[str, SecretValue]:
        """Returns every current value (references expanded unless ``expand`` is False),
        recording one ``secret.read`` per key (with the caller's stated reason). A limited
        secret's read is counted like any other read; sealed and expired secrets are left
        out. Where the environment's policy wants a reason, the caller must state one
        (ReasonRequired); where it wants two people for an export (``export_approvals`` 2),
        ``approval`` must name an approved, unused ``env.export`` approval of this
        environment that the caller asked for and someone else approved: it is used in
        this transaction (``approval.used``), else ApprovalRequired. Both refusals are
        recorded as ``access.denied`` and change nothing."""
        if approval is not None:
            approval = validate_approval_id(approval)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        try:
            return self._export(ctx, project, environment, expand=expand, approval=approval)
        except (ReasonRequired, ApprovalRequired) as refusal:
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

    def _export(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        *,
        expand: bool,
        approval: str | None,
    ) -> dict[str, SecretValue]:
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            self._whole_environment_read(conn, ctx, found, env, approval)
            serialize_counted_reads(conn, ctx.actor.org_id)
            limited = secret_store.limited_secrets(conn, env.id)
            values: dict[str, SecretValue] = {}
            current = secret_store.current_versions(conn, env.id, time.time())
            for key, stored in sorted(current.items()):
                if key in limited:
                    try:
                        value, _ = self._ops.reveal_current(
                            conn, ctx, found, env, limited[key], via="export", reason_checked=True
                        )
                    except NotFound:  # sealed, or its last read went to someone else
                        continue
                else:
                    value = self._ops.read_stored(
                        conn, ctx, found, env, key, stored, via="export", reason_checked=True
                    )
                if expand:
                    value = expand_secret(conn, ctx, self._ops, found, env, key, value)
                values[key] = value
            return values

    def _whole_environment_read(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        project: Project,
        env: Environment,
        approval: str | None,
    ) -> None:
        """Checks, in the transaction of a read of every value of ``env`` (an export, a
        promotion from it), what its policy wants: a stated reason (else ReasonRequired)
        and, for ``export_approvals`` 2, a second person's approval, which is used here
        (else ApprovalRequired). Separation of duties binds people: a machine identity
        (a deploy's ``coffer run``) reads only what an admin granted it, cannot ask for
        approvals, and so needs none; it still states a reason where one is required."""
        policy = policy_for(conn, ctx.actor.org_id, env.name)
        if policy is None:
            return
        if policy.require_read_reason and ctx.reason is None:
            raise reason_required(env.name)
        if policy.export_approvals >= 2 and ctx.actor.kind is not ActorKind.MACHINE:
            require_approval(
                conn,
                self._ops.audit,
                ctx,
                approval,
                operation=Operation.ENV_EXPORT,
                target=f"{project.name}/{env.name}",
                now=time.time(),
            )

    def diff(self, ctx: CallContext, project: str, from_env: str, to_env: str) -> EnvironmentDiff:
        """Compares two environments' keys and (raw) values; reports keys only, never values.
        Needs read access to both environments."""
        for env_name in (from_env, to_env):
            self._gate.require(ctx, Action.SECRET_READ, project=project, environment=env_name)
        with self._engine.begin() as conn:
            found = require_project(conn, ctx.actor, project)
            left = self._plaintexts(conn, found, require_environment(conn, found, from_env))
            right = self._plaintexts(conn, found, require_environment(conn, found, to_env))
            shared = sorted(left.keys() & right.keys())
            result = EnvironmentDiff(
                only_in_from=sorted(left.keys() - right.keys()),
                only_in_to=sorted(right.keys() - left.keys()),
                different=[k for k in shared if left[k] != right[k]],
                same=[k for k in shared if left[k] == right[k]],
            )
            self._ops.audit.append(
                conn,
                ctx,
                Event.ENVIRONMENT_DIFFED,
                project=project,
                environment=from_env,
                metadata={"to": to_env, "keys_compared": len(left.keys() | right.keys())},
            )
            return result

    def promote(
        self,
        ctx: CallContext,
        project: str,
        from_env: str,
        to_env: str,
        *,
        keys: Iterable[str] | None = None,
        overwrite: bool = False,
        dry_run: bool = False,
        approval: str | None = None,
    ) -> PromotionReport:
        """Copies values from one environment to another. A key absent in the target is
        created; a differing one is updated with ``overwrite`` and skipped without it; an
        identical one is skipped. With ``dry_run`` nothing is written. Raw values are copied,
        so references resolve in the target environment. A source secret with a TTL or read
        limit is skipped: a copy would outlive its limits. Copying values out of an
        environment reads it as a whole: unless ``dry_run``, its policy's reason and second
        approval (``approval``) are needed as for ``export``, and their refusals are
        recorded the same way."""
        if from_env == to_env:
            raise InvalidInput("--from and --to must name different environments", field="to")
        wanted = (
            None if keys is None else sorted({validate_key_name(k, field="keys") for k in keys})
        )
        if wanted == []:
            raise InvalidInput("keys must name at least one key when given", field="keys")
        if approval is not None:
            approval = validate_approval_id(approval)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=from_env)
        target_action = Action.SECRET_READ if dry_run else Action.SECRET_WRITE
        self._gate.require(ctx, target_action, project=project, environment=to_env)
        try:
            return self._promote(
                ctx,
                project,
                from_env,
                to_env,
                wanted,
                overwrite=overwrite,
                dry_run=dry_run,
                approval=approval,
            )
        except (ReasonRequired, ApprovalRequired) as refusal:
            record_refusal(
                self._engine,
                self._ops.audit,
                ctx,
                refusal,
                Action.SECRET_READ,
                project=project,
                environment=from_env,
            )
            raise

    def _promote(
        self,
        ctx: CallContext,
        project: str,
        from_env: str,
        to_env: str,
        wanted: list[str] | None,
        *,
        overwrite: bool,
        dry_run: bool,
        approval: str | None,
    ) -> PromotionReport:
        report = PromotionReport(dry_run=dry_run)
        with self._engine.begin() as conn:
            found = require_project(conn, ctx.actor, project)
            source_env = require_environment(conn, found, from_env)
            target_env = require_environment(conn, found, to_env)
            if not dry_run:
                self._whole_environment_read(conn, ctx, found, source_env, approval)
            source = self._plaintexts(conn, found, source_env)
            target = self._plaintexts(conn, found, target_env)
            limited = secret_store.limited_secrets(conn, source_env.id)
            missing = [k for k in wanted or [] if k not in source]
            if missing:
                raise NotFound(
                    f"keys not found in {from_env!r}: {', '.join(missing)}", field="keys"
                )
            for key in wanted or sorted(source):
                if key in limited or (
                    key in target and (target[key] == source[key] or not overwrite)
                ):
                    report.skipped.append(key)
                    continue
                (report.updated if key in target else report.created).append(key)
                if not dry_run:
                    self._ops.write(
                        conn,
                        ctx,
                        found,
                        target_env,
                        key,
                        source[key],
                        comment=f"promoted from {from_env}",
                        metadata={"via": "promote", "from": from_env},
                    )
        return report
