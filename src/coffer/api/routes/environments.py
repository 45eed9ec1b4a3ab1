"""``/api/v1/projects/{project}/environments``: create, list and delete environments."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import environment_json

router = APIRouter(prefix="/api/v1/projects/{project}/environments", tags=["environments"])


class EnvironmentCreate(BaseModel):
    """A new environment's name: letters, digits, "_" and "-", at most 64 characters."""

    name: str = Field(max_length=256)


@router.post("", status_code=201)
async def create_environment(
    project: str, body: EnvironmentCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Adds an environment to the project."""
    return environment_json(
        await run(services.projects.create_environment, caller, project, body.name)
    )


@router.get("")
async def list_environments(
    project: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Lists the project's environments."""
    envs = await run(services.projects.list_environments, caller, project)
    return {"environments": [environment_json(env) for env in envs]}


@router.delete("/{environment}", status_code=204)
async def delete_environment(
    project: str, environment: str, caller: Caller, services: ServicesDep, run: Run
) -> Response:
    """Deletes the environment and every secret in it. Irreversible."""
    await run(services.projects.delete_environment, caller, project, environment)
    return Response(status_code=204)
