"""``/api/v1/members`` (invite, change role, remove, transfer ownership) and
``/api/v1/org`` (show, require MFA, delete)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import invitation_json, iso, member_json
from coffer.domain.errors import InvalidInput

router = APIRouter(prefix="/api/v1", tags=["team"])


class Invite(BaseModel):
    """Whom to invite, as which role (``admin`` or ``viewer``), for how long (``7d``)."""

    email: str = Field(max_length=1024)
    role: str = Field(max_length=64)
    expires_in: str | None = Field(default=None, max_length=32)


class RoleChange(BaseModel):
    """The member's new role: ``admin`` or ``viewer``."""

    role: str = Field(max_length=64)


class Transfer(BaseModel):
    """The member who becomes the owner."""

    email: str = Field(max_length=1024)


class OrgUpdate(BaseModel):
    """Organization settings to change (at least one): whether MFA is required, and the
    working hours (``Mon-Fri 09:00-18:00 Europe/Paris``; null or ``off`` clears them)."""

    require_mfa: bool | None = None
    working_hours: str | None = Field(default=None, max_length=256)


class OrgDelete(BaseModel):
    """The organization's name, repeated to confirm."""

    confirm: str = Field(max_length=256)


@router.get("/members")
async def list_members(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists members and pending invitations (admins and owners)."""
    members, invitations = await run(services.team.members, caller)
    return {
        "members": [member_json(m) for m in members],
        "invitations": [invitation_json(i) for i in invitations],
    }


@router.post("/members/invite", status_code=201)
async def invite(body: Invite, caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Invites a person; the answer holds the one-time invitation token to pass on."""
    issued = await run(
        services.team.invite, caller, body.email, body.role, expires_in=body.expires_in
    )
    return {**invitation_json(issued.info), "token": issued.token}


@router.patch("/members/{email}")
async def change_role(
    email: str, body: RoleChange, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Changes a member's role (admin or viewer)."""
    return member_json(await run(services.team.change_role, caller, email, body.role))


@router.delete("/members/{email}", status_code=204)
async def remove_member(email: str, caller: Caller, services: ServicesDep, run: Run) -> Response:
    """Removes a member with their tokens, API keys and grants."""
    await run(services.team.remove, caller, email)
    return Response(status_code=204)


@router.post("/members/transfer-ownership")
async def transfer_ownership(
    body: Transfer, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Makes a member the owner; the previous owner becomes an admin (owner only)."""
    await run(services.team.transfer_ownership, caller, body.email)
    return {"owner": body.email.strip().lower()}


@router.get("/org")
async def show_org(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Shows the caller's organization."""
    org, require_mfa, working_hours = await run(services.team.organization, caller)
    return {
        "id": org.id,
        "name": org.name,
        "created_at": iso(org.created_at),
        "require_mfa": require_mfa,
        "working_hours": working_hours,
    }


@router.patch("/org")
async def update_org(
    body: OrgUpdate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Changes organization settings (admins and owners); answers the settings now in force."""
    if body.require_mfa is None and "working_hours" not in body.model_fields_set:
        raise InvalidInput("give require_mfa or working_hours", field="body")
    # Working hours first: they are the setting that can be malformed, and bad input must
    # change nothing.
    if "working_hours" in body.model_fields_set:
        await run(services.team.set_working_hours, caller, body.working_hours)
    if body.require_mfa is not None:
        await run(services.team.require_mfa, caller, body.require_mfa)
    _, require_mfa, working_hours = await run(services.team.organization, caller)
    return {"require_mfa": require_mfa, "working_hours": working_hours}


@router.delete("/org", status_code=204)
async def delete_org(body: OrgDelete, caller: Caller, services: ServicesDep, run: Run) -> Response:
    """Deletes the organization and everything in it (owner only). Irreversible."""
    await run(services.team.delete_organization, caller, body.confirm)
    return Response(status_code=204)
