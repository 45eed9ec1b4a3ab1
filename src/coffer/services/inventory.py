"""Inventory metadata of secrets, the organization's environment policies and compliance
settings (issue 9, part 1).

Reading metadata records nothing (it is not a secret value). Changing it, a policy or the
settings writes its audit entry in the same transaction. A policy that existing secrets
already break is refused (Conflict naming them) unless the caller accepts it explicitly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.errors import Conflict, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.inventory import (
    EnvironmentPolicy,
    InventoryChange,
    InventoryEntry,
    parse_choice,
    parse_reminder_days,
    policy_violations,
)
from coffer.domain.models import CallContext
from coffer.domain.names import validate_key_name, validate_resource_name
from coffer.services.access import AccessGate
from coffer.services.exposures import readable_environments
from coffer.services.lookup import require_scope
from coffer.services.policy_enforcement import check_write, record_inventory
from coffer.services.secret_ops import secret_not_found
from coffer.storage import inventory_store, policy_store, secret_store, settings_store
from coffer.storage.database import read_snapshot
from coffer.storage.settings_store import ComplianceSettings

# How many breaking secrets a refused policy change names (the rest are counted).
LISTED_VIOLATIONS = 50


@dataclass(frozen=True)
class PolicySaved:
    """A saved policy and the existing secrets that break it (only when the caller accepted
    them with ``allow_existing_violations``)."""

    policy: EnvironmentPolicy
    violations: list[InventoryEntry]


def with_violations(
    entries: list[InventoryEntry], policies: dict[str, EnvironmentPolicy]
) -> list[InventoryEntry]:
    """``entries`` with the rules of their environments' policies each one breaks."""
    return [
        replace(entry, violations=tuple(policy_violations(policy, entry.fields)))
        if (policy := policies.get(entry.environment)) is not None
        else entry
        for entry in entries
    ]


def _refusal(policy: EnvironmentPolicy, broken: list[InventoryEntry]) -> Conflict:
    """The Conflict naming the first ``LISTED_VIOLATIONS`` secrets that break ``policy``."""
    listed = "; ".join(
        f"{entry.project}/{entry.environment}/{entry.key} ({', '.join(entry.violations)})"
        for entry in broken[:LISTED_VIOLATIONS]
    )
    more = len(broken) - LISTED_VIOLATIONS
    count = (
        "1 existing secret already breaks"
        if len(broken) == 1
        else f"{len(broken)} existing secrets already break"
    )
    return Conflict(
        f"the {policy.environment} policy was not saved: {count} it: {listed}"
        f"{f'; and {more} more' if more > 0 else ''}. Fix them first, or save it anyway with "
        "allow_existing_violations (coffer policy set --allow-existing-violations)",
        field="environment",
    )


class InventoryService:
    """Secrets' metadata, environment policies and compliance settings of an organization."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    # --- one secret's metadata -------------------------------------------------------------

    def secret_inventory(
        self, ctx: CallContext, project: str, environment: str, key: str
    ) -> InventoryEntry:
        """Returns the secret's metadata and the policy rules it breaks; needs read access
        to the environment and records no read. Raises NotFound for an unknown, burned or
        expired secret."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_READ, project=project, environment=environment)
        with read_snapshot(self._engine) as conn:
            _, env = require_scope(conn, ctx.actor, project, environment)
            return self._entry(conn, ctx.actor.org_id, env.id, key, environment)

    def update(
        self,
        ctx: CallContext,
        project: str,
        environment: str,
        key: str,
        change: InventoryChange,
    ) -> InventoryEntry:
        """Applies ``change`` to the secret's metadata (needs write access) and records
        ``inventory.updated``. Raises NotFound for an unknown, burned or expired secret and
        PolicyViolation when the secret would then break its environment's policy; changes
        nothing then."""
        validate_key_name(key)
        self._gate.require(ctx, Action.SECRET_WRITE, project=project, environment=environment)
        now = time.time()
        with self._engine.begin() as conn:
            found, env = require_scope(conn, ctx.actor, project, environment)
            row = secret_store.find_secret(conn, env.id, key, for_update=True)
            if row is None or row.current_version < 1 or row.limits.expired(now):
                raise secret_not_found(key, environment)
            fields = check_write(conn, ctx.actor.org_id, env.name, row.id, key, change)
            assert fields is not None  # a change always yields the fields to save
            where = (found.name, env.name, key)
            record_inventory(conn, ctx, self._audit, where, row.id, fields, change, now)
            return self._entry(conn, ctx.actor.org_id, env.id, key, environment)

    def _entry(
        self, conn: sa.Connection, org_id: str, environment_id: str, key: str, environment: str
    ) -> InventoryEntry:
        row = secret_store.find_secret(conn, environment_id, key)
        entry = None if row is None else inventory_store.entry_of(conn, row.id, time.time())
        if entry is None:
            raise secret_not_found(key, environment)
        policy = policy_store.policy_for(conn, org_id, environment)
        return with_violations([entry], {environment: policy} if policy else {})[0]

    # --- the inventory ---------------------------------------------------------------------

    def inventory(
        self, ctx: CallContext, project: str | None = None, environment: str | None = None
    ) -> list[InventoryEntry]:
        """Returns every unexpired secret of every environment the caller may read (of
        ``project`` and environments called ``environment`` when given), by project,
        environment and key, each with its metadata and the policy rules it breaks. Records
        no read. Raises NotFound for an unknown project (or environment of ``project``), and
        AccessDenied when the caller may read none of ``project``'s environments asked."""
        if environment is not None:
            validate_resource_name(environment, field="environment")
        self._gate.require(ctx, Action.PROJECT_VIEW, project=project)
        with read_snapshot(self._engine) as conn:
            if project is not None and environment is not None:
                require_scope(conn, ctx.actor, project, environment)
            scopes = [
                (found, env)
                for found, env in readable_environments(conn, ctx, project)
                if environment is None or env.name == environment
            ]
            entries = inventory_store.inventory_in(conn, [env.id for _, env in scopes], time.time())
            policies = self._policies_by_name(conn, ctx.actor.org_id)
        if project is not None and not scopes:
            self._gate.deny(
                ctx,
                Action.SECRET_READ,
                f"read access to no environment of project {project} asked for is granted",
                project=project,
                environment=environment,
            )
        return with_violations(entries, policies)

    def violations(self, ctx: CallContext) -> list[InventoryEntry]:
        """Returns every unexpired secret the caller may read that breaks its environment's
        policy, with the rules it breaks; records no read."""
        return [entry for entry in self.inventory(ctx) if entry.violations]

    @staticmethod
    def _policies_by_name(conn: sa.Connection, org_id: str) -> dict[str, EnvironmentPolicy]:
        return {policy.environment: policy for policy in policy_store.all_policies(conn, org_id)}

    # --- policies --------------------------------------------------------------------------

    def policies(self, ctx: CallContext) -> list[EnvironmentPolicy]:
        """Returns the organization's policies by environment name (any member may read
        them)."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        with read_snapshot(self._engine) as conn:
            return policy_store.all_policies(conn, ctx.actor.org_id)

    def set_policy(
        self, ctx: CallContext, policy: EnvironmentPolicy, *, allow_existing_violations: bool
    ) -> PolicySaved:
        """Creates or replaces the policy for environments called ``policy.environment``
        (admins) and records ``policy.updated``. When existing secrets already break it, it
        is refused with Conflict naming them (at most ``LISTED_VIOLATIONS``, and how many
        more), changing nothing, unless ``allow_existing_violations``: then it is saved and
        they are returned."""
        self._gate.require(ctx, Action.PROJECT_MANAGE)
        now = time.time()
        org_id = ctx.actor.org_id
        with self._engine.begin() as conn:
            entries = inventory_store.inventory_named(conn, org_id, policy.environment, now)
            broken = [
                entry
                for entry in with_violations(entries, {policy.environment: policy})
                if entry.violations
            ]
            if broken and not allow_existing_violations:
                raise _refusal(policy, broken)
            policy_store.save_policy(conn, org_id, policy, by=ctx.actor.id, now=now)
            self._audit.append(
                conn,
                ctx,
                Event.POLICY_UPDATED,
                environment=policy.environment,
                metadata={
                    "required_fields": ",".join(policy.required_fields),
                    "max_rotation_days": policy.max_rotation_days,
                    "require_read_reason": policy.require_read_reason,
                    "export_approvals": policy.export_approvals,
                    "existing_violations": len(broken),
                },
            )
        return PolicySaved(policy, broken)

    def delete_policy(self, ctx: CallContext, environment: str) -> None:
        """Removes the policy for environments called ``environment`` (admins) and records
        ``policy.deleted``. Raises NotFound when there is none."""
        validate_resource_name(environment, field="environment")
        self._gate.require(ctx, Action.PROJECT_MANAGE)
        with self._engine.begin() as conn:
            if not policy_store.delete_policy(conn, ctx.actor.org_id, environment):
                raise NotFound(f"no policy for environment {environment!r}", field="environment")
            self._audit.append(conn, ctx, Event.POLICY_DELETED, environment=environment)

    # --- compliance settings ---------------------------------------------------------------

    def settings(self, ctx: CallContext) -> ComplianceSettings:
        """Returns the organization's compliance settings (any member may read them)."""
        self._gate.require(ctx, Action.PROJECT_VIEW)
        with read_snapshot(self._engine) as conn:
            return settings_store.settings_for(conn, ctx.actor.org_id)

    def change_settings(
        self,
        ctx: CallContext,
        *,
        root_rotation_approvals: object = None,
        rotation_reminder_days: object = None,
    ) -> ComplianceSettings:
        """Changes the settings given (admins; lowering ``root_rotation_approvals`` from 2 to
        1 takes the owner) and records ``compliance.settings_updated``. Raises InvalidInput
        naming the field: ``root_rotation_approvals`` (not 1 or 2), ``rotation_reminder_days``
        (not 0 to 90)."""
        approvals = (
            None
            if root_rotation_approvals is None
            else parse_choice(root_rotation_approvals, "root_rotation_approvals", (1, 2))
        )
        reminder = (
            None if rotation_reminder_days is None else parse_reminder_days(rotation_reminder_days)
        )
        if approvals is None and reminder is None:
            raise InvalidInput(
                "give root_rotation_approvals or rotation_reminder_days (or both)",
                field="root_rotation_approvals",
            )
        self._gate.require(ctx, Action.PROJECT_MANAGE)
        current = self.settings(ctx)
        if approvals is not None and approvals < current.root_rotation_approvals:
            self._gate.require(ctx, Action.ORG_OWN)
        changed = ComplianceSettings(
            root_rotation_approvals=current.root_rotation_approvals
            if approvals is None
            else approvals,
            rotation_reminder_days=current.rotation_reminder_days if reminder is None else reminder,
        )
        with self._engine.begin() as conn:
            settings_store.save_settings(
                conn, ctx.actor.org_id, changed, by=ctx.actor.id, now=time.time()
            )
            self._audit.append(
                conn,
                ctx,
                Event.COMPLIANCE_SETTINGS_UPDATED,
                metadata={
                    "root_rotation_approvals": changed.root_rotation_approvals,
                    "rotation_reminder_days": changed.rotation_reminder_days,
                    "previous_root_rotation_approvals": current.root_rotation_approvals,
                    "previous_rotation_reminder_days": current.rotation_reminder_days,
                },
            )
        return changed
