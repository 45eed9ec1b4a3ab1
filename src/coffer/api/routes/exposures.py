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
    ``rule_id`` the rule that found it (at most 128 characters), ``location`` where
    (``path:line``, at most 1024 bytes of UTF-8)."""

    fingerprint: str
    rule_id: str
    location: str


class MatchBody(BaseModel):
    """A random ``nonce`` (16 to 64 bytes, base64url; fresh for each scan, the same for all
    of one scan's batches), at most 10,000 findings, and optionally the ``project`` whose
    secrets alone are compared."""

    nonce: str
    findings: list[ReportedFindingBody]
    project: str | None = None


@router.post("/match")
async def match_findings(
    body: MatchBody, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Compares each finding's keyed fingerprint with every secret version the caller may
    read (the 20 newest of each secret that is unexpired, unsealed and has reads left; of
    ``project`` only, when given) and answers the matches: ``index`` of the finding, where
    the secret lives, which version, and whether it is the current one. Each match is
    recorded as an exposure (``secret.exposed`` in the audit log) once per version and
    location. No value or fingerprint is stored, logged or returned.

    A scan sends its findings in batches under ONE nonce. The server computes the caller's
    fingerprint set for that nonce (and project) once and keeps it in its memory for about a
    minute (HMACs and names only, never values or on disk; a bounded number of sets, least
    recently used evicted), so later batches of the scan cost only lookups; a batch that
    reaches another server node computes the set there. A request that would compare more
    than 50,000 versions answers 413 ``too_large`` naming ``project``: send one project at a
    time. An unknown ``project`` answers 404."""
    request = parse_match_request(
        body.nonce, [item.model_dump() for item in body.findings], body.project
    )
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
