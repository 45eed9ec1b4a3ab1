"""Turning domain records into JSON-ready dicts. Values appear only where asked for."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from coffer.domain.models import (
    Environment,
    EphemeralInfo,
    Project,
    RevealedSecret,
    SecretInfo,
    SecretVersionInfo,
    WriteResult,
)
from coffer.domain.read_limits import LimitState, LimitStatus
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


def limits_json(state: LimitState) -> dict[str, Any]:
    """A limited secret's TTL, read limit and counters."""
    return {
        "status": state.status.value,
        "expires_at": _when(state.expires_at),
        "max_reads": state.max_reads,
        "read_count": state.read_count,
        "reads_remaining": state.reads_remaining,
        "delete": state.burn,
    }


def _with_limits(body: dict[str, Any], state: LimitState) -> dict[str, Any]:
    """``body`` with a ``limits`` object when the secret has a TTL or read limit."""
    if state.limited:
        body["limits"] = limits_json(state)
    return body


def head_answer(state: LimitState, extra: dict[str, str] | None = None) -> Response:
    """The answer to ``HEAD`` of a limited-or-not secret: GET's status (410 when sealed)
    and the ``limit_headers`` (plus ``extra``), no body."""
    status = 410 if state.status is LimitStatus.SEALED else 200
    return Response(status_code=status, headers={**limit_headers(state), **(extra or {})})


def limit_headers(state: LimitState) -> dict[str, str]:
    """The ``X-Coffer-*`` headers with which ``HEAD`` describes a secret without reading it."""
    headers = {"X-Coffer-Status": state.status.value}
    if state.max_reads is not None:
        headers["X-Coffer-Read-Count"] = str(state.read_count)
        headers["X-Coffer-Max-Reads"] = str(state.max_reads)
        headers["X-Coffer-Reads-Remaining"] = str(state.reads_remaining)
    if state.expires_at is not None:
        headers["X-Coffer-Expires-At"] = iso(state.expires_at)
    return headers


def secret_info_json(info: SecretInfo) -> dict[str, Any]:
    """A secret's metadata (and limits, when it has any), no value."""
    body = {
        "key": info.key,
        "version": info.version,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
    }
    return _with_limits(body, info.limits)


def revealed_json(secret: RevealedSecret) -> dict[str, Any]:
    """A secret version with its value: the only serializer that reveals one. A limited
    secret's limits are as they stand after this read."""
    body = {
        "key": secret.key,
        "version": secret.version,
        "value": secret.value.reveal(),
        "created_at": iso(secret.created_at),
        "comment": secret.comment,
    }
    return _with_limits(body, secret.limits)


def ephemeral_json(info: EphemeralInfo) -> dict[str, Any]:
    """An ephemeral secret's (or share's) metadata and limits, no value."""
    return {
        "key": info.key,
        "kind": info.kind.value,
        "created_by": info.created_by,
        "created_at": iso(info.created_at),
        "updated_at": iso(info.updated_at),
        "limits": limits_json(info.limits),
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
    body = {"key": result.key, "outcome": result.outcome, "version": result.version}
    return _with_limits(body, result.limits)


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
