"""The checks of each SOC 2 control (``domain.controls``): each reads its part of the
facts and records failing sentences naming the failing items, or notes on what it found."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from coffer.domain.control_facts import (
    REVIEW_MAX_AGE_DAYS,
    STALE_REQUEST_DAYS,
    ControlFacts,
)
from coffer.domain.evidence import DAY, day_text, first_items


@dataclass
class Findings:
    """What one control's checks found: failing sentences with their items, and notes on
    what passed."""

    problems: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, summary: str, items: Sequence[str] = ()) -> None:
        """Records a failing check: ``summary`` with its first items, and every item."""
        shown = f"{summary}: {first_items(items)}" if items else summary
        self.problems.append(shown)
        self.items.extend(items or (summary,))

    @property
    def failed(self) -> bool:
        """True when any check failed."""
        return bool(self.problems)

    def reason(self) -> str:
        """The failing checks' sentences, or when none failed what was found."""
        return ". ".join(part[:1].upper() + part[1:] for part in self.problems or self.notes) + "."


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def logical_access(facts: ControlFacts) -> Findings:
    f, found = facts.logical_access, Findings()
    if f.unprotected_versions:
        found.fail(
            f"{_plural(len(f.unprotected_versions), 'secret version')} not sealed under a "
            "live project data key",
            f.unprotected_versions,
        )
    else:
        found.notes.append(
            f"{_plural(f.secret_versions, 'secret version')} sealed with AES-256-GCM under "
            "wrapped project data keys"
        )
    if f.require_mfa:
        waiting = len(f.admins_without_mfa)
        found.notes.append(
            "the organization requires MFA"
            + (f" ({_plural(waiting, 'admin')} blocked until they enrol)" if waiting else "")
        )
    elif f.admins_without_mfa:
        found.fail(
            f"MFA is not required and {_plural(len(f.admins_without_mfa), 'owner or admin')} "
            "has not enrolled",
            f.admins_without_mfa,
        )
    elif f.admins:
        found.notes.append(f"every owner and admin ({f.admins}) has MFA enrolled")
    else:
        found.notes.append("no owner or admin account exists (only the bootstrap token)")
    return found


def authorisation(facts: ControlFacts) -> Findings:
    f, found = facts.authorisation, Findings()
    if f.stale_requests:
        found.fail(
            f"{_plural(len(f.stale_requests), 'access request')} of the period left "
            f"undecided for {STALE_REQUEST_DAYS} days",
            f.stale_requests,
        )
    if f.unauthorised_grants:
        found.fail(
            f"{_plural(len(f.unauthorised_grants), 'grant')} given to people in the period "
            "without an expiry or an approved request",
            f.unauthorised_grants,
        )
    if f.self_approvals:
        found.fail(
            f"{_plural(len(f.self_approvals), 'request')} approved by its own requester",
            f.self_approvals,
        )
    found.notes.append(
        f"{f.pending_requests} pending requests, {f.requests_approved} approved and "
        f"{f.requests_denied} denied in the period, "
        f"{_plural(f.operations_approved, 'operation')} approved by a second person; "
        f"{f.grants_in_period} grants given to people in the period, each with an expiry or "
        "from an approved request; 0 self-approvals (an approver must not be the requester)"
    )
    return found


def removal(facts: ControlFacts) -> Findings:
    f, found = facts.removal, Findings()
    oldest = facts.period_end - REVIEW_MAX_AGE_DAYS * DAY
    signed = f.last_signed_off_at
    if signed is None or not (oldest <= signed <= facts.period_end):
        last = (
            f"the last, {f.last_review!r}, was signed off {day_text(signed)}"
            if signed is not None
            else "none was ever signed off"
        )
        found.fail(
            f"no access review signed off in the {REVIEW_MAX_AGE_DAYS} days before "
            f"{day_text(facts.period_end - 1e-3)} ({last})"
        )
    else:
        found.notes.append(f"access review {f.last_review!r} signed off {day_text(signed)}")
    if f.unapplied_revokes:
        found.fail(
            f"{_plural(len(f.unapplied_revokes), 'revoke decision')} not applied",
            f.unapplied_revokes,
        )
    else:
        found.notes.append(f"every revoke decision applied ({f.revoke_decisions})")
    if f.offboarded_with_access:
        found.fail(
            f"{_plural(len(f.offboarded_with_access), 'offboarded member')} still holding access",
            f.offboarded_with_access,
        )
    else:
        found.notes.append(
            f"{_plural(f.offboardings, 'offboarded member')} holding no live token or grant"
        )
    return found


def external_access(facts: ControlFacts) -> Findings:
    f, found = facts.external_access, Findings()
    if f.tokens_without_expiry:
        found.fail(
            f"{_plural(len(f.tokens_without_expiry), 'live token')} with neither an expiry "
            "nor an idle timeout",
            f.tokens_without_expiry,
        )
    else:
        found.notes.append(
            f"every live token and API key ({f.live_tokens}) expires or times out when idle"
        )
    if f.machines_without_allow_list:
        found.fail(
            f"{_plural(len(f.machines_without_allow_list), 'machine identity')} without an "
            "IP allow-list",
            f.machines_without_allow_list,
        )
    else:
        found.notes.append(f"every machine identity ({f.machines}) has an IP allow-list")
    return found


def data_movement(facts: ControlFacts) -> Findings:
    f, found = facts.data_movement, Findings()
    single = [
        f"{name} (export_approvals {count})" for name, count in f.export_approvals if count < 2
    ]
    if single:
        found.fail("whole-environment export of production needs no second approver", single)
    elif f.export_approvals:
        names = ", ".join(name for name, _ in f.export_approvals)
        found.notes.append(f"exporting {names} whole needs a second approver")
    else:
        found.notes.append("no production environment exists")
    if f.tls:
        found.notes.append("the server serves HTTPS (COFFER_TLS_CERT)")
    elif f.trusted_proxies:
        found.notes.append("the server sits behind trusted TLS proxies (COFFER_TRUSTED_PROXIES)")
    else:
        found.fail(
            "the server serves plain HTTP (COFFER_TLS_CERT unset) and no trusted proxy is "
            "configured (COFFER_TRUSTED_PROXIES)"
        )
    return found


def detection(facts: ControlFacts) -> Findings:
    f, found = facts.detection, Findings()
    if f.exposed_current:
        found.fail(
            f"{_plural(len(f.exposed_current), 'secret')} found outside the vault and not "
            "rotated since",
            f.exposed_current,
        )
    elif f.exposures_recorded:
        found.notes.append(
            f"{_plural(f.exposures_recorded, 'scanner match')} recorded (the last "
            f"{day_text(f.last_match_at or facts.now)}); every exposed secret was rotated"
        )
    else:
        found.notes.append(
            "no scanner match recorded (`coffer scan --match-vault` reports leaked vault values)"
        )
    return found


def monitoring(facts: ControlFacts) -> Findings:
    f, found = facts.monitoring, Findings()
    if not f.log_verified:
        found.fail(f"the audit log does not verify: {f.verify_problem or 'unknown problem'}")
    else:
        found.notes.append(f"the audit log verifies ({_plural(f.entries, 'entry')})")
    lag = facts.now - f.oldest_unsigned_at if f.oldest_unsigned_at is not None else 0.0
    if lag > f.checkpoint_lag_allowed:
        found.fail(
            f"an audit entry has waited {lag / 3600:.1f} hours for a signed checkpoint (the "
            "sealer is not running)"
        )
    elif f.last_checkpoint_at is not None:
        found.notes.append(f"the last checkpoint was signed {day_text(f.last_checkpoint_at)}")
    if f.active_webhooks == 0 and f.siem_streams == 0:
        found.fail("no one is alerted: no active webhook and no SIEM stream (COFFER_AUDIT_STREAMS)")
    else:
        found.notes.append(
            f"{_plural(f.active_webhooks, 'active webhook')} and "
            f"{_plural(f.siem_streams, 'SIEM stream')} receive events"
        )
    if f.anomaly_environments:
        found.notes.append(
            f"anomaly detection watches reads in {', '.join(f.anomaly_environments)}"
        )
    return found


def change(facts: ControlFacts) -> Findings:
    f, found = facts.change, Findings()
    if f.overdue:
        found.fail(f"{_plural(len(f.overdue), 'secret')} overdue for rotation", f.overdue)
    if f.flagged:
        found.fail(
            f"{_plural(len(f.flagged), 'secret')} flagged for rotation now and not rotated",
            f.flagged,
        )
    if f.policy_breaches:
        found.fail(
            f"{_plural(len(f.policy_breaches), 'secret')} breaking its environment's policy",
            f.policy_breaches,
        )
    if f.versions_without_author:
        found.fail(
            f"{_plural(len(f.versions_without_author), 'secret version')} without an author",
            f.versions_without_author,
        )
    if not found.failed:
        found.notes.append(
            f"{_plural(f.secrets, 'secret')} on schedule ({f.due} due soon), every one within its "
            f"environment's policy, every one of {_plural(f.versions, 'version')} with its author"
        )
    return found
