"""Liveness and identity: ``/healthz`` (no auth, constant) and ``/api/v1/whoami``; which
node runs each background job: ``/api/v1/sys/jobs``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import iso

router = APIRouter()


@router.get("/healthz", tags=["system"])
async def healthz() -> dict[str, str]:
    """The process is alive. Returns a constant; touches nothing."""
    return {"status": "ok"}


@router.get("/readyz", tags=["system"])
async def readyz(services: ServicesDep, run: Run) -> JSONResponse:
    """Whether this node can serve: 200 ``ready`` when the database, Redis (when set), the
    root key and the audit writer all answer, else 503 ``not ready`` with each check's
    reason. Each check has a deadline of at most two seconds. No auth, never rate limited."""
    report = await run.in_thread(services.readiness.check)
    checks: dict[str, dict[str, Any]] = {}
    for check in report.checks:
        shown: dict[str, Any] = {"ok": check.ok, "ms": check.ms}
        if check.detail is not None:
            shown["error" if not check.ok else "detail"] = check.detail
        checks[check.name] = shown
    return JSONResponse(
        {"status": "ready" if report.ready else "not ready", "checks": checks},
        status_code=200 if report.ready else 503,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/api/v1/sys/seal-status", tags=["system"])
async def seal_status() -> dict[str, Any]:
    """Whether the vault is sealed (a Shamir-split root waiting for `coffer unseal`); a
    server that answers here with the whole API is unsealed."""
    return {"sealed": False, "threshold": 0, "progress": 0}


@router.post("/api/v1/sys/unseal", tags=["system"])
async def unseal() -> dict[str, Any]:
    """Takes one share while the vault is sealed; once it is open there is nothing to do."""
    return {"sealed": False, "threshold": 0, "progress": 0}


@router.get("/api/v1/whoami", tags=["system"])
async def whoami(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Returns the identity behind the token: kind, role, grants and restrictions."""
    actor = await run(services.login.whoami, caller)
    return {
        "id": actor.id,
        "kind": str(actor.kind),
        "org_id": actor.org_id,
        "name": actor.name,
        "role": actor.role.value if actor.role else None,
        "token_kind": actor.token_kind,
        "token_id": actor.token_id,
        "grants": [
            {
                "project": g.project,
                "environment": g.environment,
                "access": g.access.value,
                "expires_at": iso(g.expires_at) if g.expires_at else None,
            }
            for g in actor.grants
        ],
        "mfa_enrolment_required": actor.restrictions.mfa_enrolment_required,
    }


@router.get("/api/v1/sys/jobs", tags=["system"])
async def jobs(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Every background job with the node holding its lease and when that lease runs out
    (``held`` is false once it has: no node is doing the job right now). Admins and owners."""
    leases = await run(services.background.leases, caller)
    return {
        "jobs": [
            {
                "job": lease.job,
                "holder": lease.holder,
                "expires_at": iso(lease.expires_at),
                "held": lease.held,
            }
            for lease in leases
        ]
    }
