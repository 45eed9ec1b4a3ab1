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


class Result(StrEnum):
    """Outcome recorded with an audit entry."""

    SUCCESS = "success"
    FAILURE = "failure"
