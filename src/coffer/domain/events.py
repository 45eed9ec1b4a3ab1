"""The one vocabulary of events, ``area.verb_past``, shared by the audit log, filters and hooks."""

from __future__ import annotations

from enum import StrEnum

from coffer.domain.errors import InvalidInput


class Event(StrEnum):
    """Every action the audit log records."""

    ORG_CREATED = "org.created"
    TOKEN_CREATED = "token.created"
    PROJECT_CREATED = "project.created"
    PROJECT_DELETED = "project.deleted"
    ENVIRONMENT_CREATED = "environment.created"
    ENVIRONMENT_DELETED = "environment.deleted"
    ENVIRONMENT_DIFFED = "environment.diffed"
    SECRET_CREATED = "secret.created"
    SECRET_UPDATED = "secret.updated"
    SECRET_READ = "secret.read"
    SECRET_DELETED = "secret.deleted"
    SECRET_BULK_DELETE = "secret.bulk_delete"
    SECRET_BURNED = "secret.burned"
    SECRET_EXPIRED = "secret.expired"
    SECRET_PRUNED = "secret.pruned"
    SECRET_SEALED = "secret.sealed"
    SECRET_LIMITS_CHANGED = "secret.limits_changed"
    SECRET_EXPOSED = "secret.exposed"  # a scan found a stored value outside the vault
    KEY_ROTATED = "key.rotated"
    ROOT_KEY_ROTATED = "key.root_rotated"
    BACKUP_CREATED = "backup.created"
    BACKUP_RESTORED = "backup.restored"
    TOKEN_REVOKED = "token.revoked"
    APIKEY_CREATED = "apikey.created"
    APIKEY_REVOKED = "apikey.revoked"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_LOGOUT = "auth.logout"
    AUTH_MFA_ENABLED = "auth.mfa_enabled"
    AUTH_MFA_DISABLED = "auth.mfa_disabled"
    AUTH_PASSWORD_CHANGED = "auth.password_changed"
    MEMBER_INVITED = "member.invited"
    MEMBER_JOINED = "member.joined"
    MEMBER_REMOVED = "member.removed"
    ROLE_CHANGED = "role.changed"
    GRANT_CREATED = "grant.created"
    GRANT_REVOKED = "grant.revoked"
    OWNERSHIP_TRANSFERRED = "ownership.transferred"
    MACHINE_CREATED = "machine.created"
    MACHINE_DELETED = "machine.deleted"
    ORG_UPDATED = "org.updated"
    ORG_DELETED = "org.deleted"
    ACCESS_DENIED = "access.denied"
    AUDIT_EXPORTED = "audit.exported"
    AUDIT_PRUNED = "audit.pruned"
    AUDIT_VERIFIED = "audit.verified"
    WEBHOOK_CREATED = "webhook.created"
    WEBHOOK_DELETED = "webhook.deleted"
    WEBHOOK_TESTED = "webhook.tested"
    WEBHOOK_FAILED = "webhook.failed"
    ANOMALY_DETECTED = "anomaly.detected"
    # Compliance (issue 9): inventory and policies, rotation, requests, approvals, reviews.
    INVENTORY_UPDATED = "inventory.updated"
    POLICY_UPDATED = "policy.updated"
    POLICY_DELETED = "policy.deleted"
    COMPLIANCE_SETTINGS_UPDATED = "compliance.settings_updated"
    COMPLIANCE_EVIDENCE_EXPORTED = "compliance.evidence_exported"
    ROTATION_DUE = "rotation.due"
    ROTATION_OVERDUE = "rotation.overdue"
    ROTATION_FLAGGED = "rotation.flagged"
    ROTATION_CONFIGURED = "rotation.configured"
    ROTATION_COMPLETED = "rotation.completed"
    ROTATION_FAILED = "rotation.failed"
    REQUEST_CREATED = "request.created"
    REQUEST_APPROVED = "request.approved"
    REQUEST_DENIED = "request.denied"
    REQUEST_CANCELLED = "request.cancelled"
    REQUEST_EXPIRED = "request.expired"
    APPROVAL_REQUESTED = "approval.requested"
    APPROVAL_GRANTED = "approval.granted"
    APPROVAL_DENIED = "approval.denied"
    APPROVAL_USED = "approval.used"
    REVIEW_STARTED = "review.started"
    REVIEW_DECIDED = "review.decided"
    REVIEW_SIGNED_OFF = "review.signed_off"
    MEMBER_OFFBOARDED = "member.offboarded"


def event_pattern_matches(pattern: str, action: str) -> bool:
    """True when ``action`` matches ``pattern``: an exact name, ``area.*`` or ``*``."""
    if pattern == "*" or pattern == action:
        return True
    return pattern.endswith(".*") and action.startswith(pattern[:-1])


def parse_event_pattern(text: str, *, field: str) -> str:
    """Returns ``text`` as an event pattern (a known event, ``area.*`` of a known area, or
    ``*``). Raises InvalidInput naming ``field`` otherwise."""
    pattern = text.strip()
    if pattern == "*" or pattern in _NAMES:
        return pattern
    if pattern.endswith(".*") and pattern[:-1] in _AREAS:
        return pattern
    raise InvalidInput(
        f"{field}: {pattern[:80]!r} is not an event; use a name such as secret.read, an area "
        "such as secret.*, or *"
    )


_NAMES = frozenset(e.value for e in Event)
_AREAS = frozenset(e.value.split(".", 1)[0] + "." for e in Event)


class Result(StrEnum):
    """Outcome recorded with an audit entry."""

    SUCCESS = "success"
    FAILURE = "failure"
