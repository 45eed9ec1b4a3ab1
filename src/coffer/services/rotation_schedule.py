"""When each secret was last rotated and when it is next due (``domain.rotation_schedule``);
secrets flagged for rotation now; the ``rotation.due``/``rotation.overdue`` reminders.

Listing the schedule shows metadata only and records no ``secret.read``. The reminders are
sent by the server's background job over every organization (on one node at a time, through
the job leases) and by an admin for their own organization (``POST
/api/v1/rotation/notify``): one ``rotation.due`` audit entry per secret version entering the
reminder window and one ``rotation.overdue`` per version past due or to rotate now, each at
most once (``rotation_notices``). Webhooks subscribed to ``rotation.*`` deliver them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.events import Event
from coffer.domain.models import CallContext, Environment, Project
from coffer.domain.names import validate_key_name
from coffer.domain.rotation_schedule import (
    RotationFlag,
    RotationState,
    ScheduleEntry,
    SecretRotationFacts,
    notice_for,
    schedule_entry,
    schedule_sort_key,
    validate_flag_note,
)
from coffer.services.access import AccessGate
from coffer.services.exposures import readable_environments
from coffer.services.lookup import require_scope
from coffer.services.retries import retry_on_conflict
from coffer.services.secret_ops import secret_not_found
from coffer.storage import (
    exposure_store,
    policy_store,
    project_store,
    rotation_store,
    rotator_store,
    secret_store,
    settings_store,
)
from coffer.storage.database import read_snapshot

MANUAL = "manual"


@dataclass(frozen=True)
class RotatorSummary:
    """The rotator of a scheduled secret: its kind and how its last run went."""

    kind: str
    last_run_at: float | None
    last_status: str | None


@dataclass(frozen=True)
class ScheduledSecret:
    """A secret's schedule entry, with its rotator when it has one."""

    entry: ScheduleEntry
    rotator: RotatorSummary | None


@dataclass(frozen=True)
class Schedule:
    """The schedule of the secrets a caller may read, most urgent first, and the
    organization's reminder window (days before the due date a secret counts as due)."""

    reminder_days: int
    secrets: list[ScheduledSecret]
    generated_at: float


@dataclass(frozen=True)
class FlagResult:
    """A secret flagged for rotation now: its current version and the flag."""

    project: str
    environment: str
    key: str
    flag: RotationFlag


@dataclass(frozen=True)
class SentNotice:
    """One reminder written to the audit log (``rotation.due`` or ``rotation.overdue``)."""

    project: str
    environment: str
    key: str
    version: int
    state: RotationState
    secret_state: RotationState


class RotationService:
    """The rotation schedule, manual flags and reminders."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    def schedule(self, ctx: CallContext, project: str | None = None) -> Schedule:
        """Returns every current (unexpired) secret of every environment the caller may read
        (of ``project`` only, when given) with its period, next due time and state, most
        urgent first. Records nothing. Raises NotFound for an unknown project, and
        AccessDenied when the caller may read none of its environments."""
        self._gate.require(ctx, Action.PROJECT_VIEW, project=project)
        now = time.time()
        with read_snapshot(self._engine) as conn:
            scopes = readable_environments(conn, ctx, project)
            reminder = settings_store.settings_for(conn, ctx.actor.org_id).rotation_reminder_days
            found = scheduled_secrets(conn, ctx.actor.org_id, scopes, now, reminder)
        if project is not None and not scopes:
            self._gate.deny(
                ctx,
                Action.SECRET_READ,
                f"read access to no environment of project {project} is granted",
                project=project,
            )
        return Schedule(reminder_days=reminder, secrets=found, generated_at=now)

    def due(
        self, ctx: CallContext, project: str | None = None, *, overdue_only: bool = False
    ) -> Schedule:
        """Like ``schedule``, keeping only the secrets that are due, overdue or to rotate
        now (with ``overdue_only``: overdue or to rotate now)."""
        wanted = {RotationState.OVERDUE, RotationState.ROTATE_NOW}
        if not overdue_only:
            wanted.add(RotationState.DUE)
        full = self.schedule(ctx, project)
        kept = [item for item in full.secrets if item.entry.state in wanted]
        return Schedule(
            reminder_days=full.reminder_days, secrets=kept, generated_at=full.generated_at
        )

    def flag(
        self, ctx: CallContext, project: str, environment: str, key: str, note: object
    ) -> FlagResult:
        """Flags the secret's current version for rotation now (reason ``manual``, with
        ``note``), recording ``rotation.flagged``; writing a new version resolves it. Needs
        the admin role and read access to the environment. Raises InvalidInput naming
        ``note`` or ``key``, NotFound for an unknown project, environment or secret."""
        validate_key_name(key)
        text = validate_flag_note(note)
        self._gate.require(ctx, Action.PROJECT_MANAGE)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        now = time.time()
        by = ctx.actor.id or None
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = secret_store.find_secret(conn, env.id, key, for_update=True)
            if row is None or row.limits.expired(now):
                raise secret_not_found(key, environment)
            rotation_store.flag_for_rotation(
                conn, [row.id], reason=MANUAL, detail=text, by=by, now=now
            )
            self._audit.append(
                conn,
                ctx,
                Event.ROTATION_FLAGGED,
                project=found.name,
                environment=env.name,
                key=key,
                metadata={"version": row.current_version, "flag": MANUAL, "note": text},
            )
        return FlagResult(
            project=found.name,
            environment=env.name,
            key=key,
            flag=RotationFlag(row.current_version, MANUAL, text, now, by),
        )

    def notify(self, ctx: CallContext | None) -> list[SentNotice]:
        """Sends the reminders not sent yet: for the caller's organization (admins), or for
        every organization without ``ctx`` (the server's job). Returns what it sent."""
        if ctx is not None:
            self._gate.require(ctx, Action.PROJECT_MANAGE)
            orgs = [ctx.actor.org_id]
        else:
            with self._engine.connect() as conn:
                orgs = sorted({found.org_id for found in project_store.all_projects(conn)})
        sent: list[SentNotice] = []
        for org_id in orgs:
            sent.extend(self._notify_org(ctx, org_id))
        return sent

    @retry_on_conflict
    def _notify_org(self, ctx: CallContext | None, org_id: str) -> list[SentNotice]:
        """One organization's reminders, in one transaction: a notice and its audit entry
        are written together, so a reminder is recorded exactly when it was sent."""
        now = time.time()
        sent: list[SentNotice] = []
        with self._engine.begin() as conn:
            scopes = [
                (found, env)
                for found in project_store.list_projects(conn, org_id)
                for env in project_store.list_environments(conn, found.id)
            ]
            reminder = settings_store.settings_for(conn, org_id).rotation_reminder_days
            for item in scheduled_secrets(conn, org_id, scopes, now, reminder):
                entry = item.entry
                state = notice_for(entry)
                if state is None or not rotation_store.record_notice(
                    conn, entry.secret_id, entry.version, state.value, now
                ):
                    continue
                self._audit.append(
                    conn,
                    ctx,
                    Event.ROTATION_DUE if state is RotationState.DUE else Event.ROTATION_OVERDUE,
                    project=entry.project,
                    environment=entry.environment,
                    key=entry.key,
                    metadata=_notice_metadata(entry),
                    org_id=org_id,
                )
                sent.append(
                    SentNotice(
                        entry.project,
                        entry.environment,
                        entry.key,
                        entry.version,
                        state,
                        entry.state,
                    )
                )
        return sent


def _notice_metadata(entry: ScheduleEntry) -> dict[str, str | int | None]:
    """What a reminder's audit entry says: the version, the state and why, the period and
    the due time (names and dates only; ``reason`` is left to a caller's stated reason)."""
    return {
        "version": entry.version,
        "state": entry.state.value,
        "why": entry.why()[:1000],
        "period_days": entry.period_days,
        "period_source": entry.period_source.value if entry.period_source else None,
        "next_due": int(entry.next_due) if entry.next_due is not None else None,
        "last_rotated": int(entry.last_rotated),
    }


def scheduled_secrets(
    conn: sa.Connection,
    org_id: str,
    scopes: Sequence[tuple[Project, Environment]],
    now: float,
    reminder_days: int,
) -> list[ScheduledSecret]:
    """The schedule entries (with rotators) of the current secrets of ``scopes``, an
    organization's environments, most urgent first."""
    policies = {
        policy.environment: policy.max_rotation_days
        for policy in policy_store.all_policies(conn, org_id)
    }
    found: list[ScheduledSecret] = []
    for project, env in scopes:
        exposures = exposure_store.exposures_in(conn, env.id)
        flags = rotation_store.flags_in(conn, env.id)
        periods = rotation_store.rotation_days_in(conn, env.id)
        rotators = rotator_store.rotators_in(conn, env.id)
        for secret in exposure_store.current_secrets(conn, env.id, now):
            facts = SecretRotationFacts(
                secret_id=secret.secret_id,
                project=project.name,
                environment=env.name,
                key=secret.key,
                version=secret.current_version,
                last_rotated=secret.last_rotated,
                rotation_days=periods.get(secret.secret_id),
                policy_days=policies.get(env.name),
                exposures=tuple(exposures.get(secret.secret_id, ())),
                flags=tuple(flags.get(secret.secret_id, ())),
            )
            stored = rotators.get(secret.secret_id)
            summary = (
                RotatorSummary(stored.kind, stored.last_run_at, stored.last_status)
                if stored is not None
                else None
            )
            found.append(ScheduledSecret(schedule_entry(facts, now, reminder_days), summary))
    return sorted(found, key=lambda item: schedule_sort_key(item.entry))
