"""``/api/v1/approvals``: separation of duties. Someone asks for an approval of an operation
(``env.export`` of ``project/environment``, ``root.rotate``) for a reason; an admin who is
not the requester approves or denies it; the requester then uses it once within 24 hours
(``approval=ID`` on the export, ``coffer rotate-root --approval ID``).

An approval reads::

    {"id", "operation", "target" ("project/environment" | null), "reason",
     "requested_by": {"id", "name"}, "status" (pending, approved, denied, used, expired),
     "created_at", "expires_at" (end of the pending time, then of the validity once
     approved), "decided_by": {"id", "name"} | null, "decided_at", "used_at"}
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import iso
from coffer.domain.access_requests import OperationApproval

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])


class ApprovalCreate(BaseModel):
    """The operation to approve, its target, and why."""

    operation: str = Field(description="env.export or root.rotate")
    target: str | None = Field(
        default=None, description="project/environment for env.export; none for root.rotate"
    )
    reason: str = Field(description="Why: 1 to 500 characters, no control characters")


class Decision(BaseModel):
    """An approver's note (required to deny)."""

    note: str | None = Field(default=None, description="1 to 500 characters")


def _when(timestamp: float | None) -> str | None:
    return iso(timestamp) if timestamp is not None else None


def approval_json(approval: OperationApproval, now: float) -> dict[str, Any]:
    """One approval as the API shows it, its status as of ``now``."""
    decider = approval.decided_by
    return {
        "id": approval.id,
        "operation": approval.operation.value,
        "target": approval.target,
        "reason": approval.reason,
        "requested_by": {"id": approval.requested_by.id, "name": approval.requested_by.name},
        "status": approval.status_at(now).value,
        "created_at": iso(approval.created_at),
        "expires_at": iso(approval.expires_at),
        "decided_by": {"id": decider.id, "name": decider.name} if decider else None,
        "decided_at": _when(approval.decided_at),
        "used_at": _when(approval.used_at),
    }


@router.post("", status_code=201)
async def request_approval(
    body: ApprovalCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Asks for an approval (``approval.requested``): ``env.export`` needs read access to
    the target, ``root.rotate`` the admin role."""
    approval = await run(
        services.approvals.request, caller, body.operation, body.target, body.reason
    )
    return approval_json(approval, time.time())


@router.get("")
async def list_approvals(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    status: str = Query(
        default="all", description="pending, approved, denied, used, expired or all"
    ),
) -> dict[str, Any]:
    """Lists approvals newest first: all of the organization for admins, one's own for
    anyone else."""
    found = await run(services.approvals.list_approvals, caller, status)
    now = time.time()
    return {"approvals": [approval_json(approval, now) for approval in found]}


@router.get("/{approval_id}")
async def get_approval(
    approval_id: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """One approval (the requester's own, or any for an admin)."""
    approval = await run(services.approvals.get, caller, approval_id)
    return approval_json(approval, time.time())


@router.post("/{approval_id}/approve")
async def approve(
    approval_id: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    body: Decision | None = None,
) -> dict[str, Any]:
    """Approves a pending approval (admins other than the requester; 403 for one's own,
    nothing changed): valid for 24 hours, once (``approval.granted``)."""
    note = body.note if body is not None else None
    approval = await run(services.approvals.approve, caller, approval_id, note)
    return approval_json(approval, time.time())


@router.post("/{approval_id}/deny")
async def deny(
    approval_id: str, body: Decision, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Denies a pending approval with a note, kept in the ``approval.denied`` entry."""
    approval = await run(services.approvals.deny, caller, approval_id, body.note)
    return approval_json(approval, time.time())
