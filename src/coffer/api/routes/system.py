"""Liveness and identity: ``/healthz`` (no auth, constant) and ``/api/v1/whoami``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from coffer.api.context import Caller

router = APIRouter()


@router.get("/healthz", tags=["system"])
async def healthz() -> dict[str, str]:
    """The process is alive. Returns a constant; touches nothing."""
    return {"status": "ok"}


@router.get("/api/v1/whoami", tags=["system"])
async def whoami(caller: Caller) -> dict[str, Any]:
    """Returns the identity behind the bearer token."""
    actor = caller.actor
    return {"id": actor.id, "kind": str(actor.kind), "org_id": actor.org_id, "name": actor.name}
