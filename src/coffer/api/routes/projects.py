"""``/api/v1/projects``: create, list, show and delete projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, Run, ServicesDep
from coffer.api.serialize import project_json

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


class ProjectCreate(BaseModel):
    """A new project's name: letters, digits, "_" and "-", at most 64 characters."""

    name: str = Field(max_length=256)


@router.post("", status_code=201)
async def create_project(
    body: ProjectCreate, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Creates a project with the environments development, staging and production."""
    project, envs = await run(services.projects.create, caller, body.name)
    return project_json(project, envs)


@router.get("")
async def list_projects(caller: Caller, services: ServicesDep, run: Run) -> dict[str, Any]:
    """Lists the organization's projects."""
    return {
        "projects": [project_json(p) for p in await run(services.projects.list_projects, caller)]
    }


@router.get("/{project}")
async def show_project(
    project: str, caller: Caller, services: ServicesDep, run: Run
) -> dict[str, Any]:
    """Shows one project and its environments."""
    found, envs = await run(services.projects.get, caller, project)
    return project_json(found, envs)


@router.delete("/{project}", status_code=204)
async def delete_project(project: str, caller: Caller, services: ServicesDep, run: Run) -> Response:
    """Deletes the project, all its secrets and its data keys. Irreversible."""
    await run(services.projects.delete, caller, project)
    return Response(status_code=204)
