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
from coffer.domain.team import (
    GrantInfo,
    InvitationInfo,
    IssuedToken,
    MachineInfo,
    MemberInfo,
    TokenInfo,
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


def _when(timestamp: float | None) -> str | None:
    return iso(timestamp) if timestamp is not None else None


def token_json(info: TokenInfo, *, current_id: str | None = None) -> dict[str, Any]:
    """A token's metadata (never the token)."""
    return {
        "id": info.id,
        "kind": info.kind,
        "name": info.name,
        "identity_id": info.identity_id,
        "identity_kind": info.identity_kind,
        "created_at": iso(info.created_at),
        "expires_at": _when(info.expires_at),
        "last_used_at": _when(info.last_used_at),
        "current": info.id == current_id,
    }


def issued_json(issued: IssuedToken) -> dict[str, Any]:
    """A new token with its value, shown once."""
    return {**token_json(issued.info), "token": issued.token}


def member_json(member: MemberInfo) -> dict[str, Any]:
    """A member of the organization."""
    return {
        "id": member.id,
        "email": member.email,
        "role": member.role.value,
        "mfa_enabled": member.mfa_enabled,
        "created_at": iso(member.created_at),
    }


def invitation_json(info: InvitationInfo) -> dict[str, Any]:
    """A pending invitation (never its token)."""
    return {
        "id": info.id,
        "email": info.email,
        "role": info.role.value,
        "created_at": iso(info.created_at),
        "expires_at": iso(info.expires_at),
    }


def grant_json(grant: GrantInfo) -> dict[str, Any]:
    """A grant: whom, where, which access, until when."""
    return {
        "id": grant.id,
        "identity_id": grant.identity_id,
        "identity_kind": grant.identity_kind,
        "identity": grant.identity_name,
        "project": grant.project,
        "environment": grant.environment,
        "access": grant.access.value,
        "expires_at": _when(grant.expires_at),
        "created_at": iso(grant.created_at),
    }


def machine_json(machine: MachineInfo, grants: list[GrantInfo] | None = None) -> dict[str, Any]:
    """A machine identity, with its grants when given."""
    body: dict[str, Any] = {
        "id": machine.id,
        "name": machine.name,
        "description": machine.description,
        "allowed_ips": list(machine.allowed_ips),
        "valid_after": _when(machine.valid_after),
        "valid_before": _when(machine.valid_before),
        "created_at": iso(machine.created_at),
    }
    if grants is not None:
        body["grants"] = [grant_json(g) for g in grants]
    return body
