"""``/api/v1/projects``: create, list, show and delete projects."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from coffer.api.context import Caller, ServicesDep
from coffer.api.serialize import project_json

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


class ProjectCreate(BaseModel):
    """A new project's name: letters, digits, "_" and "-", at most 64 characters."""

    name: str = Field(max_length=256)


@router.post("", status_code=201)
def create_project(body: ProjectCreate, caller: Caller, services: ServicesDep) -> dict[str, Any]:
    """Creates a project with the environments development, staging and production."""
    project, envs = services.projects.create(caller, body.name)
    return project_json(project, envs)


@router.get("")
def list_projects(caller: Caller, services: ServicesDep) -> dict[str, Any]:
    """Lists the organization's projects."""
    return {"projects": [project_json(p) for p in services.projects.list_projects(caller)]}


@router.get("/{project}")
def show_project(project: str, caller: Caller, services: ServicesDep) -> dict[str, Any]:
    """Shows one project and its environments."""
    found, envs = services.projects.get(caller, project)
    return project_json(found, envs)


@router.delete("/{project}", status_code=204)
def delete_project(project: str, caller: Caller, services: ServicesDep) -> Response:
    """Deletes the project, all its secrets and its data keys. Irreversible."""
    services.projects.delete(caller, project)
    return Response(status_code=204)
