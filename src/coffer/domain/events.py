"""The one vocabulary of events, ``area.verb_past``, shared by the audit log, filters and hooks."""

from __future__ import annotations

from enum import StrEnum


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


class Result(StrEnum):
    """Outcome recorded with an audit entry."""

    SUCCESS = "success"
    FAILURE = "failure"
