"""Reads the facts each SOC 2 control is evaluated from (``domain.controls.ControlFacts``)
out of live state, inside one read snapshot, plus what the deployment's settings say.

Rotation state follows the shared rules of issue 9 (``domain.evidence.rotation_standing``);
policy breaches are the inventory rules' own (``domain.inventory.policy_violations``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from coffer.config import Settings
from coffer.domain import control_facts as c
from coffer.domain.evidence import DAY, day_text
from coffer.domain.inventory import (
    EnvironmentPolicy,
    InventoryFields,
    Sensitivity,
    policy_violations,
)
from coffer.domain.rotation_schedule import (
    RotationState,
    ScheduleEntry,
    SecretRotationFacts,
    schedule_entry,
)
from coffer.storage import compliance_access_store as people
from coffer.storage import compliance_store as store
from coffer.storage import policy_store, settings_store
from coffer.storage.compliance_store import InventoryRow

TOKEN_KINDS = {
    "cli": "CLI token",
    "sess": "session",
    "key": "API key",
    "mach": "machine token",
    "boot": "bootstrap token",
}


@dataclass(frozen=True)
class Deployment:
    """What the server's settings say that the controls and the retention policy need:
    transport security, SIEM streams (their schemes only: addresses may carry
    credentials), retention and checkpoint intervals, watched environments, lifetimes."""

    tls: bool = False
    trusted_proxies: int = 0
    siem_streams: tuple[str, ...] = ()
    audit_retention_days: int = 0
    checkpoint_entries: int = 1000
    checkpoint_seconds: int = 60
    production_environments: tuple[str, ...] = ("production", "prod")
    anomaly_read_burst: str = "100/minute"
    session_idle: int = 3600
    session_max: int = 12 * 3600
    cli_token_ttl: int = 90 * 86400
    invitation_ttl: int = 7 * 86400

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployment:
        """The deployment facts of ``settings``."""
        return cls(
            tls=settings.tls_cert is not None,
            trusted_proxies=len(settings.trusted_proxies),
            siem_streams=tuple(s.split("://", 1)[0] for s in settings.audit_streams),
            audit_retention_days=settings.audit_retention_days,
            checkpoint_entries=settings.audit_checkpoint_entries,
            checkpoint_seconds=settings.audit_checkpoint_seconds,
            production_environments=settings.production_environments,
            anomaly_read_burst=settings.anomaly_read_burst,
            session_idle=settings.session_idle,
            session_max=settings.session_max,
            cli_token_ttl=settings.cli_token_ttl,
            invitation_ttl=settings.invitation_ttl,
        )


@dataclass(frozen=True)
class SecretStanding:
    """One secret of the inventory with its place in the rotation schedule and the policy
    rules it breaks (sentences naming the rule)."""

    row: InventoryRow
    standing: ScheduleEntry
    violations: tuple[str, ...]


def _sensitivity(text: str | None) -> Sensitivity | None:
    return Sensitivity(text) if text in {s.value for s in Sensitivity} else None


def standings(conn: sa.Connection, org_id: str, now: float) -> list[SecretStanding]:
    """Returns every unexpired secret of the organization with its rotation schedule (by
    the shared rules, ``domain.rotation_schedule``) and its policy breaches."""
    policies: Mapping[str, EnvironmentPolicy] = {
        p.environment: p for p in policy_store.all_policies(conn, org_id)
    }
    reminder = settings_store.settings_for(conn, org_id).rotation_reminder_days
    exposures, flags = store.open_exposures_and_flags(conn, org_id)
    found: list[SecretStanding] = []
    for row in store.inventory_rows(conn, org_id, now):
        policy = policies.get(row.environment)
        fields = InventoryFields(
            owner=row.owner,
            system=row.system,
            description=row.description,
            sensitivity=_sensitivity(row.sensitivity),
            rotation_days=row.rotation_days,
        )
        rotation = SecretRotationFacts(
            secret_id=row.secret_id,
            project=row.project,
            environment=row.environment,
            key=row.key,
            version=row.current_version,
            last_rotated=row.last_rotated,
            rotation_days=row.rotation_days,
            policy_days=policy.max_rotation_days if policy else None,
            exposures=tuple(exposures.get(row.secret_id, ())),
            flags=tuple(flags.get(row.secret_id, ())),
        )
        violations = tuple(policy_violations(policy, fields)) if policy else ()
        found.append(SecretStanding(row, schedule_entry(rotation, now, reminder), violations))
    return found


def logical_access(conn: sa.Connection, org_id: str) -> c.LogicalAccessFacts:
    """CC6.1's facts."""
    _, require_mfa = store.organization(conn, org_id)
    admins = people.admins_mfa(conn, org_id)
    return c.LogicalAccessFacts(
        secret_versions=store.count_versions(conn, org_id),
        unprotected_versions=tuple(store.unprotected_versions(conn, org_id)),
        require_mfa=require_mfa,
        admins=len(admins),
        admins_without_mfa=tuple(email for email, enrolled in admins if not enrolled),
    )


def _scope(project: str, environment: str | None) -> str:
    return f"{project}/{environment}" if environment else project


def authorisation(
    conn: sa.Connection, org_id: str, start: float, end: float, now: float, names: dict[str, str]
) -> c.AuthorisationFacts:
    """CC6.2's facts for the period ``start``..``end``."""
    undecided = people.undecided_requests(conn, org_id, start, end)
    limit = c.STALE_REQUEST_DAYS * DAY
    stale = [
        f"{names.get(r.requester_id, r.requester_id)} asked for {r.access} on "
        f"{_scope(r.project, r.environment)} on {day_text(r.created_at)}"
        for r in undecided
        if now - r.created_at > limit
    ]
    decided = people.decided_requests(conn, org_id, start, end)
    grants = people.person_grants_in(conn, org_id, start, end)
    unauthorised = [
        f"{names.get(g.identity_id, g.identity_id)}: {g.access} on "
        f"{_scope(g.project, g.environment)} given {day_text(g.created_at)} by "
        f"{names.get(g.created_by, g.created_by)} with no expiry and no approved request"
        for g in grants
        if g.expires_at is None and g.request_id is None
    ]
    return c.AuthorisationFacts(
        pending_requests=len(undecided) - len(stale),
        stale_requests=tuple(stale),
        requests_approved=decided.get("approved", 0) + decided.get("expired", 0),
        requests_denied=decided.get("denied", 0),
        operations_approved=people.approved_operations(conn, org_id, start, end),
        grants_in_period=len(grants),
        unauthorised_grants=tuple(unauthorised),
        self_approvals=tuple(people.self_approvals(conn, org_id)),
    )


def removal(
    conn: sa.Connection, org_id: str, end: float, now: float, names: dict[str, str]
) -> c.RemovalFacts:
    """CC6.3's facts: reviews signed off before ``end``, revoke decisions, offboardings.

    A revoke decision is applied when a person is no longer a member (removed or
    offboarded), when a machine is deleted or holds no live token and no grant, and for
    any other identity (a bootstrap token) when it holds no live token."""
    last = people.last_signed_off_review(conn, org_id, end)
    decisions = people.revoke_decisions(conn, org_id)
    leavers = people.offboarded(conn, org_id)
    ids = sorted({d.identity_id for d in decisions} | {user_id for user_id, _, _ in leavers})
    existing = people.existing_identities(conn, ids)
    with_tokens: dict[str, int] = {}
    for token in people.live_tokens(conn, org_id, now, ids):
        with_tokens[token.identity_id] = with_tokens.get(token.identity_id, 0) + 1
    with_grants = people.identities_holding_grants(conn, ids, now)
    unapplied = []
    for decision in decisions:
        identity_id, kind = decision.identity_id, decision.identity_kind
        holds = identity_id in with_tokens or identity_id in with_grants
        if kind == "user":
            pending = identity_id in existing
        elif kind == "machine":
            pending = identity_id in existing and holds
        else:
            pending = identity_id in with_tokens
        if pending:
            unapplied.append(
                f"{decision.identity_name} ({kind}) revoked in review {decision.name!r} "
                "still has access"
            )
    still = [
        f"{email} (offboarded {day_text(when)}) holds {with_tokens.get(user_id, 0)} live "
        f"tokens{' and grants' if user_id in with_grants else ''}"
        for user_id, email, when in leavers
        if user_id in with_tokens or user_id in with_grants
    ]
    return c.RemovalFacts(
        last_review=last[0] if last else None,
        last_signed_off_at=last[1] if last else None,
        revoke_decisions=len(decisions),
        unapplied_revokes=tuple(unapplied),
        offboardings=len(leavers),
        offboarded_with_access=tuple(still),
    )


def _token_name(token: people.LiveToken, names: dict[str, str]) -> str:
    kind = TOKEN_KINDS.get(token.kind, token.kind)
    holder = names.get(token.identity_id, f"{token.identity_kind} {token.identity_id}")
    return f"{kind} {token.name!r}" + ("" if holder == kind else f" of {holder}")


def external_access(
    conn: sa.Connection, org_id: str, now: float, names: dict[str, str]
) -> c.ExternalAccessFacts:
    """CC6.6's facts."""
    tokens = people.live_tokens(conn, org_id, now)
    endless = [
        _token_name(t, names) for t in tokens if t.expires_at is None and t.idle_timeout is None
    ]
    machines = people.machines_allow_lists(conn, org_id)
    return c.ExternalAccessFacts(
        live_tokens=len(tokens),
        tokens_without_expiry=tuple(endless),
        machines=len(machines),
        machines_without_allow_list=tuple(name for _, name, count in machines if count == 0),
    )


def data_movement(conn: sa.Connection, org_id: str, deployment: Deployment) -> c.DataMovementFacts:
    """CC6.7's facts: the production environments in use and their export approvals."""
    in_use = store.environment_names(conn, org_id)
    approvals = []
    for name in sorted(set(deployment.production_environments) & in_use):
        policy = policy_store.policy_for(conn, org_id, name)
        approvals.append((name, policy.export_approvals if policy else 1))
    return c.DataMovementFacts(
        export_approvals=tuple(approvals),
        tls=deployment.tls,
        trusted_proxies=deployment.trusted_proxies > 0,
    )


def detection(conn: sa.Connection, org_id: str) -> c.DetectionFacts:
    """CC7.1's facts."""
    counts = store.exposure_counts(conn, org_id)
    return c.DetectionFacts(
        exposures_recorded=counts.recorded,
        exposed_current=tuple(counts.exposed_current),
        last_match_at=counts.last_detected_at,
    )


def change(conn: sa.Connection, org_id: str, secrets: list[SecretStanding]) -> c.ChangeFacts:
    """CC8.1's facts from the inventory's standings."""
    overdue = [
        f"{s.row.name} (due {day_text(s.standing.next_due)}, every {s.standing.period_days} days)"
        for s in secrets
        if s.standing.by_schedule is RotationState.OVERDUE and s.standing.next_due is not None
    ]
    flagged = [
        f"{s.row.name} v{s.row.current_version}: "
        + "; ".join(f"{f.reason}{': ' + f.detail if f.detail else ''}" for f in s.standing.flags)
        for s in secrets
        if s.standing.flags
    ]
    return c.ChangeFacts(
        secrets=len(secrets),
        due=sum(1 for s in secrets if s.standing.by_schedule is RotationState.DUE),
        overdue=tuple(overdue),
        flagged=tuple(flagged),
        policy_breaches=tuple(
            f"{s.row.name}: {'; '.join(s.violations)}" for s in secrets if s.violations
        ),
        versions=store.count_versions(conn, org_id),
        versions_without_author=tuple(store.versions_without_author(conn, org_id)),
    )
