"""``POST /api/v1/members/{email}/offboard`` (offboard a member in one step) and
``GET /api/v1/offboardings`` (the records, for the evidence pack)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import iso
from coffer.domain.offboarding import OffboardingRecord

router = APIRouter(prefix="/api/v1", tags=["team"])


def offboarding_json(record: OffboardingRecord) -> dict[str, Any]:
    """One offboarding: who left, who offboarded them, what was revoked, the secrets now due
    for rotation (``flagged``) and those they read (``read``), each list at most 1000 long
    (the counts are complete)."""
    return {
        "id": record.id,
        "user_id": record.user_id,
        "email": record.email,
        "role": record.role,
        "offboarded_by": record.offboarded_by,
        "offboarded_by_name": record.offboarded_by_name,
        "offboarded_at": iso(record.offboarded_at),
        "via": record.via,
        "review_id": record.review_id,
        "sessions_revoked": record.sessions_revoked,
        "tokens_revoked": record.tokens_revoked,
        "api_keys_revoked": record.api_keys_revoked,
        "grants_revoked": record.grants_revoked,
        "secrets_flagged": record.secrets_flagged,
        "secrets_read": record.secrets_read,
        "flagged": [
            {"project": s.project, "environment": s.environment, "key": s.key, "version": s.version}
            for s in record.flagged
        ],
        "read": [
            {
                "project": s.project,
                "environment": s.environment,
                "key": s.key,
                "reads": s.reads,
                "last_read_at": iso(s.last_read_at),
            }
            for s in record.read
        ],
    }


@router.post("/members/{email}/offboard")
async def offboard(email: str, caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Offboards a member in one transaction (admins and owners): revokes their sessions,
    CLI tokens, API keys and grants, removes them, flags every secret they could read for
    rotation and lists those they read. The owner and oneself cannot be offboarded."""
    return offboarding_json(await run(services.offboarding.offboard, caller, email))


@router.get("/offboardings")
async def list_offboardings(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    start: str | None = Query(
        default=None, alias="from", description="Date or ISO 8601 time, inclusive"
    ),
    end: str | None = Query(
        default=None, alias="to", description="Date (its whole day) or ISO 8601 time, inclusive"
    ),
) -> dict[str, Any]:
    """Lists the offboardings in the period, oldest first (admins and owners)."""
    period, records = await run(services.offboarding.list, caller, start, end)
    return {
        "from": iso(period.start) if period.start is not None else None,
        "to": iso(period.end) if period.end is not None else None,
        "offboardings": [offboarding_json(record) for record in records],
    }
