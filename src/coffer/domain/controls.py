"""coffer's SOC 2 controls: what each checks, and its evaluation from facts read from live
state (``ControlFacts``) into pass or fail with a reason that names what fails.

The catalogue maps one coffer control to each criterion of the Trust Services Criteria
that coffer gives evidence for (CC6.1, CC6.2, CC6.3, CC6.6, CC6.7, CC7.1, CC7.2, CC8.1).
Facts are gathered by the services; evaluation here is pure, so each rule is tested alone.
A control fails when any of its checks fails; its reason then names the failing items (the
first ten, and how many more), and ``failures`` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from coffer.domain import control_checks as checks
from coffer.domain.control_facts import (
    REVIEW_MAX_AGE_DAYS,
    STALE_REQUEST_DAYS,
    ControlFacts,
)


class ControlStatus(StrEnum):
    """The outcome of one control."""

    PASS = "pass"
    FAIL = "fail"


@dataclass(frozen=True)
class Control:
    """A control of the catalogue: its id, the SOC 2 criterion it gives evidence for, its
    title, what coffer checks, and the files of the evidence pack that show it."""

    id: str
    criterion: str
    title: str
    checks: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class ControlResult:
    """A control evaluated: pass or fail, the reason, and every failing item."""

    control: Control
    status: ControlStatus
    reason: str
    failures: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The result as the API and the pack show it."""
        return {
            "id": self.control.id,
            "criterion": self.control.criterion,
            "title": self.control.title,
            "checks": self.control.checks,
            "status": self.status.value,
            "reason": self.reason,
            "failures": list(self.failures),
            "evidence": list(self.control.evidence),
        }


CATALOGUE: tuple[tuple[Control, Callable[[ControlFacts], checks.Findings]], ...] = (
    (
        Control(
            "logical-access",
            "CC6.1",
            "Secrets are encrypted and people sign in with MFA",
            "Every secret version is sealed (AES-256-GCM envelope) under a live, wrapped "
            "project data key; the organization requires MFA or every owner and admin has "
            "enrolled.",
            ("inventory.csv", "users-and-roles.csv", "key-rotations.csv"),
        ),
        checks.logical_access,
    ),
    (
        Control(
            "access-authorisation",
            "CC6.2",
            "Access is authorised before it is given",
            f"No access request of the period went {STALE_REQUEST_DAYS} days undecided "
            "(expiring unanswered); every grant "
            "given to a person in the period expires or came from an approved request; no "
            "request was approved by its requester.",
            ("access-requests.csv", "approvals.csv", "grants.csv"),
        ),
        checks.authorisation,
    ),
    (
        Control(
            "access-removal",
            "CC6.3",
            "Access is reviewed and removed when no longer needed",
            f"An access review was signed off in the {REVIEW_MAX_AGE_DAYS} days before the "
            "period's end; every revoke decision of a signed-off review was applied; no "
            "offboarded member holds a live token or grant.",
            ("access-reviews.json", "offboardings.csv", "users-and-roles.csv"),
        ),
        checks.removal,
    ),
    (
        Control(
            "external-access",
            "CC6.6",
            "Credentials used from outside expire and machines are fenced",
            "Every live token and API key has an expiry or an idle timeout; every machine "
            "identity is restricted to an IP allow-list.",
            ("users-and-roles.csv", "grants.csv"),
        ),
        checks.external_access,
    ),
    (
        Control(
            "data-movement",
            "CC6.7",
            "Bulk export takes two people and data moves encrypted",
            "Every production environment's policy requires a second approver to export it "
            "whole (export_approvals 2); the server serves HTTPS or sits behind trusted TLS "
            "proxies.",
            ("retention-policy.md", "approvals.csv"),
        ),
        checks.data_movement,
    ),
    (
        Control(
            "leak-detection",
            "CC7.1",
            "Leaked secrets are detected and rotated",
            "No secret whose current version the scanner found outside the vault stays unrotated.",
            ("inventory.csv", "overdue.csv"),
        ),
        checks.detection,
    ),
    (
        Control(
            "monitoring",
            "CC7.2",
            "The audit log is tamper-evident and watched",
            "The whole audit log verifies against its signed checkpoints; no entry waits "
            "more than an hour (or twice the checkpoint interval) for a checkpoint; webhooks "
            "or a SIEM stream receive events.",
            ("audit-export.jsonl", "audit-verify.json", "VERIFY.md"),
        ),
        checks.monitoring,
    ),
    (
        Control(
            "change-management",
            "CC8.1",
            "Secrets change on schedule, by policy, by known authors",
            "No secret is overdue for rotation or flagged for rotation; no secret breaks its "
            "environment's policy; every secret version has an author.",
            ("rotation-history.csv", "rotation-schedule.csv", "overdue.csv", "inventory.csv"),
        ),
        checks.change,
    ),
)


def controls() -> list[Control]:
    """The catalogue, in criterion order."""
    return [control for control, _ in CATALOGUE]


def evaluate(facts: ControlFacts) -> list[ControlResult]:
    """Evaluates every control of the catalogue from ``facts``, in criterion order."""
    results = []
    for control, check in CATALOGUE:
        found = check(facts)
        status = ControlStatus.FAIL if found.failed else ControlStatus.PASS
        results.append(ControlResult(control, status, found.reason(), tuple(found.items)))
    return results


def summary(results: Sequence[ControlResult]) -> dict[str, object]:
    """How many controls pass and fail, and the ids of those that fail."""
    failing = [r.control.id for r in results if r.status is ControlStatus.FAIL]
    return {
        "controls": len(results),
        "passing": len(results) - len(failing),
        "failing": len(failing),
        "failing_ids": failing,
        "all_pass": not failing,
    }
