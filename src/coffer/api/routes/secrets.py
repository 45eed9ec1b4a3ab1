"""Secrets of one environment: list, set, get, delete, history and rollback.

Keys may contain "/" (folders), so they are the last path segment(s) of each route.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.key_path import register_secret_key_convertor
from coffer.api.serialize import revealed_json, secret_info_json, version_json, write_json
from coffer.domain.secret_value import SecretValue

register_secret_key_convertor()
router = APIRouter(prefix="/api/v1/projects/{project}/environments/{environment}", tags=["secrets"])


class SecretWrite(BaseModel):
    """A new version's value and an optional comment."""

    value: str = Field(repr=False)
    comment: str | None = None


class Rollback(BaseModel):
    """The version whose value becomes current again."""

    version: int
    comment: str | None = None


@router.get("/secrets")
async def list_secrets(
    project: str, environment: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Lists keys and versions (never values)."""
    infos = await run(services.secrets.list_keys, caller, project, environment)
    return {"secrets": [secret_info_json(info) for info in infos]}


@router.put("/secrets/{key:secretkey}")
async def set_secret(
    project: str,
    environment: str,
    key: str,
    body: SecretWrite,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Writes a new version of the secret (creating it on first write)."""
    result = await run(
        services.secrets.set,
        caller,
        project,
        environment,
        key,
        SecretValue(body.value),
        comment=body.comment,
    )
    return write_json(result)


@router.get("/secrets/{key:secretkey}")
async def get_secret(
    project: str,
    environment: str,
    key: str,
    caller: Caller,
    services: ServicesDep,
    run: Run,
    version: int | None = Query(default=None, description="A past version; default current"),
    expand: bool = Query(default=False, description="Expand ${...} references"),
) -> dict[str, Any]:
    """Returns the value of the current (or given) version. Recorded as ``secret.read``."""
    secret = await run(
        services.secrets.get, caller, project, environment, key, version=version, expand=expand
    )
    return revealed_json(secret)


@router.delete("/secrets/{key:secretkey}")
async def delete_secret(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Destroys the secret and every one of its versions. Irreversible."""
    destroyed = await run(services.secrets.delete, caller, project, environment, key)
    return {"key": key, "deleted": True, "versions_destroyed": destroyed}


@router.get("/history/{key:secretkey}")
async def secret_history(
    project: str, environment: str, key: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Lists every version of the secret, newest first, without values."""
    versions = await run(services.secrets.history, caller, project, environment, key)
    return {"key": key, "versions": [version_json(v) for v in versions]}


@router.post("/rollback/{key:secretkey}")
async def rollback_secret(
    project: str,
    environment: str,
    key: str,
    body: Rollback,
    caller: Caller,
    services: ServicesDep,
    run: Run,
) -> dict[str, Any]:
    """Writes a new version carrying the value of an earlier one."""
    result = await run(
        services.secrets.rollback,
        caller,
        project,
        environment,
        key,
        version=body.version,
        comment=body.comment,
    )
    return write_json(result)
