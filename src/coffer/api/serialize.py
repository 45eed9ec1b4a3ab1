"""Turning domain records into JSON-ready dicts. Values appear only where asked for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from coffer.domain.models import (
    Environment,
    Project,
    RevealedSecret,
    SecretInfo,
    SecretVersionInfo,
    WriteResult,
)


def iso(timestamp: float) -> str:
    """Returns an RFC 3339 UTC time with millisecond precision."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def project_json(project: Project, environments: list[Environment] | None = None) -> dict[str, Any]:
    """A project; with its environment names when given."""
    body: dict[str, Any] = {
        "name": project.name,
        "created_at": iso(project.created_at),
        "key_version": project.key_version,
    }
    if environments is not None:
        body["environments"] = [env.name for env in environments]
    return body


def environment_json(env: Environment) -> dict[str, Any]:
    """An environment."""
    return {"name": env.name, "created_at": iso(env.created_at)}


def secret_info_json(info: SecretInfo) -> dict[str, Any]:
    """A secret's metadata, no value."""
    return {
        "key": info.key,
        "version": info.version,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
    }


def revealed_json(secret: RevealedSecret) -> dict[str, Any]:
    """A secret version with its value: the only serializer that reveals one."""
    return {
        "key": secret.key,
        "version": secret.version,
        "value": secret.value.reveal(),
        "created_at": iso(secret.created_at),
        "comment": secret.comment,
    }


def version_json(info: SecretVersionInfo) -> dict[str, Any]:
    """One entry of a secret's history."""
    return {
        "version": info.version,
        "author": {"id": info.author_id, "kind": info.author_kind},
        "created_at": iso(info.created_at),
        "comment": info.comment,
    }


def write_json(result: WriteResult) -> dict[str, Any]:
    """The outcome of a write."""
    return {"key": result.key, "outcome": result.outcome, "version": result.version}
