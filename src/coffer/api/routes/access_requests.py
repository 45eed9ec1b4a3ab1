"""``/api/v1/access-requests``: members ask for time-bound access; an admin who is not the
requester approves (a grant that expires by itself) or denies; the requester may cancel.

A request reads::

    {"id", "requester": {"id", "name", "kind"}, "project", "environment" (null: the whole
     project), "access" (read|write), "reason", "duration_seconds", "status" (pending,
     approved, denied, cancelled, expired), "created_at", "pending_until" (while pending),
     "decided_by": {"id", "name"} | null, "decided_at", "note", "grant_id",
     "expires_at" (when the granted access ends)}

Times are RFC 3339 UTC; ``name`` is the e-mail address while the person exists (null
after), the id always.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import iso
from coffer.domain.access_requests import PENDING_SECONDS, AccessRequest, RequestStatus

router = APIRouter(prefix="/api/v1/access-requests", tags=["access requests"])


class RequestCreate(BaseModel):
    """What access to which project (or environment), why and for how long."""

    project: str = Field(description="The project")
    environment: str | None = Field(default=None, description="One environment; none: all")
    access: str = Field(default="read", description="read or write")
    reason: str = Field(description="Why: 1 to 500 characters, no control characters")
    duration: str | int = Field(description="How long: 5m to 30d, e.g. 8h (or seconds)")


class Decision(BaseModel):
    """An approver's note (required to deny)."""

    note: str | None = Field(default=None, description="1 to 500 characters")


def _when(timestamp: float | None) -> str | None:
    return iso(timestamp) if timestamp is not None else None


def request_json(request: AccessRequest, now: float) -> dict[str, Any]:
    """One access request as the API shows it, its status as of ``now``."""
    status = request.status_at(now)
    decider = request.decided_by
    return {
        "id": request.id,
        "requester": {
            "id": request.requester.id,
            "name": request.requester.name,
            "kind": request.requester_kind,
        },
        "project": request.project,
        "environment": request.environment,
        "access": request.access.value,
        "reason": request.reason,
        "duration_seconds": request.duration_seconds,
        "status": status.value,
        "created_at": iso(request.created_at),
        "pending_until": (
            iso(request.created_at + PENDING_SECONDS) if status is RequestStatus.PENDING else None
        ),
        "decided_by": {"id": decider.id, "name": decider.name} if decider else None,
        "decided_at": _when(request.decided_at),
        "note": request.note,
        "grant_id": request.grant_id,
        "expires_at": _when(request.expires_at),
    }


@router.post("", status_code=201)
async def create_request(
    body: RequestCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Asks for access for a reason and a duration (people only; records
    ``request.created``). 404 for an unknown project or environment."""
    request = await run(
        services.access_requests.create,
        caller,
        project=body.project,
        environment=body.environment,
        access=body.access,
        reason=body.reason,
        duration=body.duration,
    )
    return request_json(request, time.time())


@router.get("")
async def list_requests(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    status: str = Query(
        default="all", description="pending, approved, denied, cancelled, expired or all"
    ),
) -> dict[str, Any]:
    """Lists requests newest first: all of the organization for admins, one's own for
    anyone else."""
    found = await run(services.access_requests.list_requests, caller, status)
    now = time.time()
    return {"requests": [request_json(request, now) for request in found]}


@router.get("/{request_id}")
async def get_request(
    request_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """One request (the requester's own, or any for an admin)."""
    request = await run(services.access_requests.get, caller, request_id)
    return request_json(request, time.time())


@router.post("/{request_id}/approve")
async def approve_request(
    request_id: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    body: Decision | None = None,
) -> dict[str, Any]:
    """Approves a pending request (admins other than the requester; 403 for one's own,
    nothing changed): a grant expiring at now + duration is created (``request.approved``,
    ``grant.created``). 409 when it is not pending or a standing grant is in the way."""
    note = body.note if body is not None else None
    request = await run(services.access_requests.approve, caller, request_id, note)
    return request_json(request, time.time())


@router.post("/{request_id}/deny")
async def deny_request(
    request_id: str, body: Decision, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Denies a pending request with a note (admins other than the requester)."""
    request = await run(services.access_requests.deny, caller, request_id, body.note)
    return request_json(request, time.time())


@router.post("/{request_id}/cancel")
async def cancel_request(
    request_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Withdraws one's own pending request."""
    request = await run(services.access_requests.cancel, caller, request_id)
    return request_json(request, time.time())
