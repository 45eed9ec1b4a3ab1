"""Bulk routes: import and export an environment, diff and promote between environments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.domain.errors import InvalidInput
from coffer.domain.formats import parse_secrets_file, render
from coffer.domain.secret_value import SecretValue

router = APIRouter(prefix="/api/v1/projects/{project}", tags=["transfer"])

APPROVAL_DESCRIPTION = (
    "An env.export approval id, where the environment's policy wants a second approver"
)
_MEDIA_TYPES = {"dotenv": "text/plain", "json": "application/json", "yaml": "application/yaml"}


class ImportBody(BaseModel):
    """Either ``secrets`` (a key to value map) or ``content`` (a .env or JSON file's text)."""

    secrets: dict[str, str] | None = Field(default=None, repr=False)
    content: str | None = Field(default=None, repr=False)
    format: str | None = Field(default=None, description="dotenv or json; guessed when absent")
    comment: str | None = None


class PromoteBody(BaseModel):
    """Copy values from one environment to another."""

    model_config = {"populate_by_name": True}

    from_env: str = Field(alias="from")
    to_env: str = Field(alias="to")
    keys: list[str] | None = None
    overwrite: bool = False
    dry_run: bool = False


@router.post("/environments/{environment}/import")
async def import_secrets(
    project: str,
    environment: str,
    body: ImportBody,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Writes many secrets at once, all or nothing; identical values are left alone."""
    if (body.secrets is None) == (body.content is None):
        raise InvalidInput("give exactly one of secrets or content", field="secrets")
    raw = body.secrets
    if raw is None:
        raw = parse_secrets_file(body.content or "", filename=None, fmt=body.format)
    values = {key: SecretValue(value) for key, value in raw.items()}
    report = await run(
        services.transfer.import_secrets, caller, project, environment, values, comment=body.comment
    )
    return {"created": report.created, "updated": report.updated, "unchanged": report.unchanged}


@router.get("/environments/{environment}/export")
async def export_secrets(
    project: str,
    environment: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    format: str = Query(default="json", description="dotenv, json or yaml"),
    expand: bool = Query(default=True, description="Expand ${...} references"),
    approval: str | None = Query(default=None, description=APPROVAL_DESCRIPTION),
) -> Response:
    """Returns every current value as a .env, JSON or YAML document (one read entry per key).
    In dotenv, keys become variable names by the ``coffer run`` rule. Where the
    environment's policy says so, the ``reason`` query parameter (403 ``reason_required``)
    and a second person's approval (403 ``approval_required``) are needed."""
    if format not in _MEDIA_TYPES:
        raise InvalidInput("format must be one of dotenv, json, yaml", field="format")
    values = await run(
        services.transfer.export, caller, project, environment, expand=expand, approval=approval
    )
    text = render({key: value.reveal() for key, value in values.items()}, format)
    return Response(content=text, media_type=_MEDIA_TYPES[format])


@router.get("/diff")
async def diff_environments(
    project: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    from_env: str = Query(alias="from"),
    to_env: str = Query(alias="to"),
) -> dict[str, Any]:
    """Keys only in one environment and keys whose values differ. No values."""
    result = await run(services.transfer.diff, caller, project, from_env, to_env)
    return {
        "from": from_env,
        "to": to_env,
        "only_in_from": result.only_in_from,
        "only_in_to": result.only_in_to,
        "different": result.different,
        "same": result.same,
    }


@router.post("/promote")
async def promote(
    project: str,
    body: PromoteBody,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    approval: str | None = Query(default=None, description=APPROVAL_DESCRIPTION),
) -> dict[str, Any]:
    """Copies values between environments and reports created, updated and skipped keys.
    Copying out of an environment needs what exporting it needs (a reason, an approval)."""
    report = await run(
        services.transfer.promote,
        caller,
        project,
        body.from_env,
        body.to_env,
        keys=body.keys,
        overwrite=body.overwrite,
        dry_run=body.dry_run,
        approval=approval,
    )
    return {
        "created": report.created,
        "updated": report.updated,
        "skipped": report.skipped,
        "dry_run": report.dry_run,
    }
