"""``coffer projects`` and ``coffer envs``."""

from __future__ import annotations

from typing import Annotated

import typer

from coffer.cli.client import path_part
from coffer.cli.common import JsonOpt, ProjectOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table

projects_app = typer.Typer(help="Create, list and delete projects.", no_args_is_help=True)
envs_app = typer.Typer(help="Create, list and delete environments.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="Name.")]


@projects_app.command("create")
@handle_errors
def create_project(name: NameArg, as_json: JsonOpt = False) -> None:
    """Create a project (with development, staging and production)."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/projects", {"name": name})
    emit(data, as_json, f"Created project {name} ({', '.join(data['environments'])})")


@projects_app.command("list")
@handle_errors
def list_projects(as_json: JsonOpt = False) -> None:
    """List projects."""
    with api() as client:
        data = client.get_json("/api/v1/projects")
    if as_json:
        print_json(data)
        return
    rows = [(p["name"], p["key_version"], p["created_at"]) for p in data["projects"]]
    print_table("Projects", ("name", "key version", "created"), rows)


@projects_app.command("delete")
@handle_errors
def delete_project(
    name: NameArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a project, all its secrets and its keys (irreversible)."""
    if not yes and not typer.confirm(f"Delete project {name} and every secret in it?"):
        raise typer.Exit(1)
    with api() as client:
        client.request("DELETE", f"/api/v1/projects/{path_part(name)}")
    emit({"project": name, "deleted": True}, as_json, f"Deleted project {name}")


def _envs_path(project: str) -> str:
    return f"/api/v1/projects/{path_part(project)}/environments"


@envs_app.command("create")
@handle_errors
def create_env(name: NameArg, project: ProjectOpt, as_json: JsonOpt = False) -> None:
    """Add an environment to a project."""
    with api() as client:
        data = client.send_json("POST", _envs_path(project), {"name": name})
    emit(data, as_json, f"Created environment {name} in {project}")


@envs_app.command("list")
@handle_errors
def list_envs(project: ProjectOpt, as_json: JsonOpt = False) -> None:
    """List a project's environments."""
    with api() as client:
        data = client.get_json(_envs_path(project))
    if as_json:
        print_json(data)
        return
    rows = [(e["name"], e["created_at"]) for e in data["environments"]]
    print_table(f"Environments of {project}", ("name", "created"), rows)


@envs_app.command("delete")
@handle_errors
def delete_env(
    name: NameArg,
    project: ProjectOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an environment and every secret in it (irreversible)."""
    if not yes and not typer.confirm(f"Delete environment {name} of {project}?"):
        raise typer.Exit(1)
    with api() as client:
        client.request("DELETE", f"{_envs_path(project)}/{path_part(name)}")
    emit({"environment": name, "deleted": True}, as_json, f"Deleted environment {name}")
