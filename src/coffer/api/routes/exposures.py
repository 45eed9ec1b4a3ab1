"""``/api/v1/exposures``: which stored secrets a scan found, by keyed fingerprint."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from coffer.api.context import Caller, Run, ServicesDep
from coffer.services.exposures import parse_match_request

router = APIRouter(prefix="/api/v1/exposures", tags=["exposures"])


class ReportedFindingBody(BaseModel):
    """One finding: ``fingerprint`` is HMAC-SHA256(nonce, secret as UTF-8) in lowercase hex,
    ``rule_id`` the rule that found it, ``location`` where (``path:line``)."""

    fingerprint: str
    rule_id: str
    location: str


class MatchBody(BaseModel):
    """A fresh random ``nonce`` (16 to 64 bytes, base64url) and at most 10,000 findings."""

    nonce: str
    findings: list[ReportedFindingBody]


@router.post("/match")
async def match_findings(
    body: MatchBody, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Compares each finding's keyed fingerprint with every secret version the caller may
    read (the 20 newest of each secret) and answers the matches: ``index`` of the finding,
    where the secret lives, which version, and whether it is the current one. Each match is
    recorded as an exposure (``secret.exposed`` in the audit log) once per version and
    location. No value or fingerprint is stored, logged or returned."""
    request = parse_match_request(body.nonce, [item.model_dump() for item in body.findings])
    matches = await run(services.exposures.match, caller, request)
    return {
        "matches": [
            {
                "index": m.index,
                "project": m.project,
                "environment": m.environment,
                "key": m.key,
                "version": m.version,
                "current": m.current,
            }
            for m in matches
        ]
    }
