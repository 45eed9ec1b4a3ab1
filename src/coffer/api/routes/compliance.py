"""``/api/v1/compliance``: the SOC 2 control table computed from live state, and the evidence
of a period (admins and owners)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from coffer.api.context import Caller, Run, ServicesDep

router = APIRouter(prefix="/api/v1/compliance", tags=["compliance"])


@router.get("/status")
async def status(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """The control table as of now: each control's SOC 2 criterion, what coffer checks,
    ``pass`` or ``fail`` and the reason naming what fails; ``summary`` counts them. Verifies
    the whole audit log on the way (recorded as ``audit.verified``)."""
    result = await run(services.compliance.status, caller)
    return result.to_json()


@router.get("/evidence")
async def evidence(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    start: str | None = Query(
        default=None, alias="from", description="First day: YYYY-MM-DD or an ISO 8601 time"
    ),
    end: str | None = Query(
        default=None, alias="to", description="Last day (included): YYYY-MM-DD or ISO 8601"
    ),
) -> dict[str, Any]:
    """The evidence of a period (at most 3 years, ending today at the latest): the control
    table, inventory, rotation history and schedule, overdue secrets, access requests,
    approvals, reviews, offboardings, key rotations, people and roles at the period's end,
    the permission matrix, every grant, the retention policy and chart counts. Records
    ``compliance.evidence_exported``. The signed audit export of the period comes from
    ``GET /api/v1/audit/export?since=...``."""
    result: dict[str, Any] = await run(services.compliance.evidence, caller, start, end)
    return result
