"""``/api/v1/projects/{project}/key-rotation``: rotate a project's data key in steps."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from coffer.api.context import Caller, Run, ServicesDep
from coffer.services.key_rotation import DEFAULT_BATCH, KeyRotationStatus

router = APIRouter(prefix="/api/v1/projects/{project}/key-rotation", tags=["keys"])


class RotationStepBody(BaseModel):
    """One step: how many versions to re-encrypt (1 to 20,000) and where to start (the
    ``cursor`` the previous step returned; none for a new pass)."""

    model_config = ConfigDict(extra="forbid")

    batch: Any = DEFAULT_BATCH
    cursor: str | None = None


def _status_json(status: KeyRotationStatus) -> dict[str, Any]:
    return {
        "project": status.project,
        "key_version": status.key_version,
        "retiring_key_versions": list(status.retiring),
        "running": status.running,
        "total_versions": status.total,
        "remaining_versions": status.remaining,
    }


@router.get("")
async def rotation_status(
    project: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Shows the project's data-key version and any rotation under way (admins)."""
    return _status_json(await run(services.key_rotation.status, caller, project))


@router.post("")
async def start_rotation(
    project: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Starts a rotation (new writes use the new key at once), or returns the one under way
    so it can be resumed. Then POST ``/steps`` until ``done``."""
    return _status_json(await run(services.key_rotation.start, caller, project))


@router.post("/steps")
async def rotation_step(
    project: str, body: RotationStepBody, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Re-encrypts one batch under the new key. At the end, once nothing needs the old keys,
    destroys them and records ``key.rotated`` (``done`` true)."""
    step = await run(
        services.key_rotation.step, caller, project, batch=body.batch, cursor=body.cursor
    )
    return {
        "project": step.project,
        "key_version": step.key_version,
        "reencrypted": step.reencrypted,
        "cursor": step.cursor,
        "done": step.done,
    }
