"""``/api/v1/rotation``: the rotation schedule (``due``, ``schedule``), manual flags, the
reminders (``notify``) and rotators (configure, show, remove, run).

Keys may contain "/" (folders), so they are the last path segment(s) of the rotator routes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.key_path import register_secret_key_convertor
from coffer.api.serialize import iso
from coffer.domain.exposures import ExposureRecord
from coffer.domain.rotation_schedule import RotationFlag
from coffer.services.rotation_runs import RotationOutcome
from coffer.services.rotation_schedule import Schedule, ScheduledSecret, SentNotice
from coffer.services.rotators import RotatorInfo

register_secret_key_convertor()
router = APIRouter(prefix="/api/v1/rotation", tags=["rotation"])

# Any JSON value: the domain's parser names the field and its rule whatever the type.
Loose = Annotated[Any, WithJsonSchema({})]


class FlagBody(BaseModel):
    """The secret to rotate now, and why."""

    model_config = ConfigDict(extra="forbid")

    project: str = Field(max_length=64)
    environment: str = Field(max_length=64)
    key: str = Field(max_length=256)
    note: Loose = Field(default=None, description="Why it must be rotated now (1-300 chars)")


class RotatorBody(BaseModel):
    """A rotator: ``kind`` (``random`` or ``postgresql``) and that kind's parameters."""

    model_config = ConfigDict(extra="forbid")

    kind: Loose = Field(default=None, description="random or postgresql")
    length: Loose = Field(default=None, description="Characters of the new value (16-256)")
    alphabet: Loose = Field(
        default=None, description="random only: alnum (default), hex, base64url or ascii"
    )
    role: Loose = Field(default=None, description="postgresql only: the role to rotate")
    connection: Loose = Field(
        default=None,
        description="postgresql only: project/environment/KEY of the vault secret holding "
        "the admin connection URL",
    )


def _when(moment: float | None) -> str | None:
    return iso(moment) if moment is not None else None


def exposure_json(exposure: ExposureRecord) -> dict[str, Any]:
    """An open exposure of a secret's current version."""
    return {
        "version": exposure.version,
        "location": exposure.location,
        "rule_id": exposure.rule_id,
        "detected_at": iso(exposure.detected_at),
    }


def flag_json(flag: RotationFlag) -> dict[str, Any]:
    """An open rotation flag."""
    return {
        "version": flag.version,
        "reason": flag.reason,
        "detail": flag.detail,
        "flagged_at": iso(flag.flagged_at),
        "flagged_by": flag.flagged_by,
    }


def scheduled_json(item: ScheduledSecret) -> dict[str, Any]:
    """One secret of the schedule."""
    entry, rotator = item.entry, item.rotator
    return {
        "project": entry.project,
        "environment": entry.environment,
        "key": entry.key,
        "version": entry.version,
        "last_rotated": iso(entry.last_rotated),
        "period_days": entry.period_days,
        "period_source": entry.period_source.value if entry.period_source else None,
        "next_due": _when(entry.next_due),
        "days_left": entry.days_left,
        "state": entry.state.value,
        "schedule_state": entry.by_schedule.value,
        "why": entry.why(),
        "exposures": [exposure_json(exposure) for exposure in entry.exposures],
        "flags": [flag_json(flag) for flag in entry.flags],
        "rotator": (
            {
                "kind": rotator.kind,
                "last_run_at": _when(rotator.last_run_at),
                "last_status": rotator.last_status,
            }
            if rotator is not None
            else None
        ),
    }


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule answer: when it was computed, the reminder window and the secrets."""
    return {
        "generated_at": iso(schedule.generated_at),
        "reminder_days": schedule.reminder_days,
        "secrets": [scheduled_json(item) for item in schedule.secrets],
    }


def rotator_json(info: RotatorInfo) -> dict[str, Any]:
    """A secret's rotator (parameters only, never a credential)."""
    return {
        "project": info.project,
        "environment": info.environment,
        "key": info.key,
        "kind": info.config.kind.value,
        "config": info.config.to_json(),
        "created_at": iso(info.created_at),
        "created_by": info.created_by,
        "last_run_at": _when(info.last_run_at),
        "last_status": info.last_status,
        "last_error": info.last_error,
    }


def notice_json(notice: SentNotice) -> dict[str, Any]:
    """A reminder that was sent."""
    return {
        "project": notice.project,
        "environment": notice.environment,
        "key": notice.key,
        "version": notice.version,
        "event": f"rotation.{notice.state.value}",
        "state": notice.secret_state.value,
    }


def outcome_json(outcome: RotationOutcome) -> dict[str, Any]:
    """A completed rotation (the new version, never its value)."""
    return {
        "project": outcome.project,
        "environment": outcome.environment,
        "key": outcome.key,
        "kind": outcome.kind.value,
        "version": outcome.version,
        "rotated_at": iso(outcome.rotated_at),
    }


@router.get("/due")
async def rotation_due(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    overdue: bool = Query(
        default=False, description="Only overdue secrets and those to rotate now"
    ),
    project: str | None = Query(default=None, description="Only this project"),
) -> dict[str, Any]:
    """The secrets you may read that are due (within the reminder window), overdue, or to
    rotate now (exposed or flagged), most urgent first. Records no read."""
    schedule = await run(services.rotation.due, caller, project, overdue_only=overdue)
    return schedule_json(schedule)


@router.get("/schedule")
async def rotation_schedule(
    caller: Caller,
    services: ServicesDep,
    run: Run,
    project: str | None = Query(default=None, description="Only this project"),
) -> dict[str, Any]:
    """Every current secret you may read with its last rotation, period (and where it comes
    from), next due time and state, most urgent first. Records no read."""
    return schedule_json(await run(services.rotation.schedule, caller, project))


@router.post("/flags", status_code=201)
async def flag_secret(
    body: FlagBody, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Flags a secret for rotation now (admins), with a note saying why; writing a new
    version resolves it."""
    result = await run(
        services.rotation.flag, caller, body.project, body.environment, body.key, body.note
    )
    return {
        "project": result.project,
        "environment": result.environment,
        "key": result.key,
        **flag_json(result.flag),
    }


@router.post("/notify")
async def notify(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Sends the reminders of your organization not sent yet (admins): one rotation.due per
    secret version entering the reminder window, one rotation.overdue per version past due
    or to rotate now."""
    sent = await run(services.rotation.notify, caller)
    return {
        "due": sum(1 for notice in sent if notice.state.value == "due"),
        "overdue": sum(1 for notice in sent if notice.state.value == "overdue"),
        "notices": [notice_json(notice) for notice in sent],
    }


@router.put("/rotators/{project}/{environment}/{key:secretkey}")
async def set_rotator(
    project: str,
    environment: str,
    key: str,
    body: RotatorBody,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Configures how the secret is rotated at its source (admins with write access)."""
    spec = body.model_dump(exclude_none=True)
    info = await run(services.rotators.configure, caller, project, environment, key, spec)
    return rotator_json(info)


@router.get("/rotators/{project}/{environment}/{key:secretkey}")
async def show_rotator(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """The secret's rotator and its last run."""
    return rotator_json(await run(services.rotators.show, caller, project, environment, key))


@router.delete("/rotators/{project}/{environment}/{key:secretkey}")
async def remove_rotator(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Removes the secret's rotator (admins with write access); answers what it was."""
    info = await run(services.rotators.remove, caller, project, environment, key)
    return {"removed": True, **rotator_json(info)}


@router.post("/rotate/{project}/{environment}/{key:secretkey}")
async def rotate_secret(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Runs the secret's rotator now (write access, and read access to its connection
    secret): the credential changes at its source and the new value becomes a new version.
    409 conflict while another run of the secret is under way, 400 policy_violation when
    the secret breaks its environment's policy (nothing changed then); 502 rotation_failed
    says why when it could not change or store the credential."""
    outcome = await run(services.rotators.rotate, caller, project, environment, key)
    return outcome_json(outcome)
