"""``/api/v1/reports``: compliance reports (the rotation report)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Query

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import iso
from coffer.domain.exposures import RotationEntry

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])


def rotation_entry_json(entry: RotationEntry, now: float) -> dict[str, Any]:
    """One secret of the rotation report; its exposures newest first."""
    return {
        "project": entry.project,
        "environment": entry.environment,
        "key": entry.key,
        "current_version": entry.current_version,
        "last_rotated": iso(entry.last_rotated),
        "age_days": entry.age_days(now),
        "status": entry.status.value,
        "exposures": [
            {
                "version": exposure.version,
                "current": exposure.version == entry.current_version,
                "detected_at": iso(exposure.detected_at),
                "rule_id": exposure.rule_id,
                "location": exposure.location,
                "reported_by": exposure.reported_by or None,
            }
            for exposure in entry.exposures
        ],
    }


@router.get("/rotation")
async def rotation_report(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    project: str | None = Query(default=None, description="Only this project"),
) -> dict[str, Any]:
    """Every secret the caller may read with its current version, when it was last rotated,
    its age and where it leaked; ``status`` is ``rotate now`` while the current version is
    exposed (writing a new version resolves it), else ``ok``. Secrets to rotate come first."""
    entries = await run(services.rotation_report.report, caller, project)
    now = time.time()
    return {
        "generated_at": iso(now),
        "secrets": [rotation_entry_json(entry, now) for entry in entries],
    }
