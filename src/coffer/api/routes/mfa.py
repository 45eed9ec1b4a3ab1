"""``/api/v1/mfa``: TOTP enrolment, confirmation and removal for the caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep

router = APIRouter(prefix="/api/v1/mfa", tags=["mfa"])


class MfaCode(BaseModel):
    """A current TOTP code (or, to disable, a recovery code)."""

    code: str = Field(max_length=64, repr=False)


@router.post("/setup")
async def setup(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Starts enrolment: returns the TOTP secret and ``otpauth://`` URI (shown once)."""
    enrolment = await run(services.mfa.setup, caller)
    return {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri}


@router.post("/enable")
async def enable(body: MfaCode, caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Confirms enrolment with a current code; returns one-time recovery codes (shown once)."""
    codes = await run(services.mfa.enable, caller, body.code)
    return {"enabled": True, "recovery_codes": codes}


@router.post("/disable")
async def disable(body: MfaCode, caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Turns MFA off after a current code or a recovery code."""
    await run(services.mfa.disable, caller, body.code)
    return {"enabled": False}
