"""``/api/v1/machines`` (machine identities and their tokens) and ``/api/v1/grants``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import grant_json, issued_json, machine_json

router = APIRouter(prefix="/api/v1", tags=["machines"])


class MachineCreate(BaseModel):
    """A machine identity: its name, scopes (``project[:environment]:read|write``), and
    optional IP allow-list and validity window."""

    name: str = Field(max_length=256)
    scopes: list[str] = Field(max_length=100)
    description: str | None = Field(default=None, max_length=1024)
    allowed_ips: list[str] = Field(default_factory=list, max_length=100)
    valid_after: datetime | None = None
    valid_before: datetime | None = None


class MachineToken(BaseModel):
    """An optional name and lifetime (``30d``) for a machine's new token."""

    name: str | None = Field(default=None, max_length=128)
    expires_in: str | None = Field(default=None, max_length=32)


class GrantCreate(BaseModel):
    """Whom (a member's e-mail or a machine's name), where and what
    (``project[:environment]:none|read|write``), until when."""

    member: str | None = Field(default=None, max_length=1024)
    machine: str | None = Field(default=None, max_length=256)
    scope: str = Field(max_length=256)
    expires_in: str | None = Field(default=None, max_length=32)
    expires_at: datetime | None = None


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


@router.post("/machines", status_code=201)
async def create_machine(
    body: MachineCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Creates a machine identity with its scopes (admins and owners)."""
    machine = await run(
        services.access.create_machine,
        caller,
        body.name,
        scopes=body.scopes,
        description=body.description,
        allowed_ips=body.allowed_ips,
        valid_after=_ts(body.valid_after),
        valid_before=_ts(body.valid_before),
    )
    return machine_json(machine)


@router.get("/machines")
async def list_machines(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists machine identities with their grants."""
    found = await run(services.access.list_machines, caller)
    return {"machines": [machine_json(m, grants) for m, grants in found]}


@router.delete("/machines/{name}")
async def delete_machine(
    name: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Deletes a machine identity; its tokens stop working at once."""
    revoked = await run(services.access.delete_machine, caller, name)
    return {"deleted": True, "name": name, "tokens_revoked": revoked}


@router.post("/machines/{name}/tokens", status_code=201)
async def machine_token(
    name: str, body: MachineToken, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Issues a token for the machine; the token is in this answer only."""
    issued = await run(
        services.access.machine_token,
        caller,
        name,
        token_name=body.name,
        expires_in=body.expires_in,
    )
    return issued_json(issued)


@router.post("/grants", status_code=201)
async def create_grant(
    body: GrantCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Grants a member or machine access to a project or environment (replacing any grant
    it had there)."""
    grant = await run(
        services.access.grant,
        caller,
        member=body.member,
        machine=body.machine,
        scope=body.scope,
        expires_in=body.expires_in,
        expires_at=_ts(body.expires_at),
    )
    return grant_json(grant)


@router.get("/grants")
async def list_grants(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists every grant, expired ones included."""
    return {"grants": [grant_json(g) for g in await run(services.access.list_grants, caller)]}


@router.delete("/grants/{grant_id}", status_code=204)
async def revoke_grant(grant_id: str, caller: Caller, services: ServicesDep, run: Run) -> Response:
    """Deletes a grant; it stops applying at once."""
    await run(services.access.revoke_grant, caller, grant_id)
    return Response(status_code=204)
