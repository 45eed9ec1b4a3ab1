"""``coffer secrets``: set, get, list, delete, history, rollback."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from coffer.cli.client import key_part, path_part
from coffer.cli.common import EnvOpt, JsonOpt, ProjectOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table
from coffer.domain.errors import InvalidInput
from coffer.domain.names import validate_key_name

secrets_app = typer.Typer(help="Read and write secrets.", no_args_is_help=True)

KeyArg = Annotated[str, typer.Argument(help="Secret key, e.g. DB_PASSWORD or db/password.")]
CommentOpt = Annotated[str | None, typer.Option("--comment", "-c", help="Why it changed.")]


def env_path(project: str, env: str) -> str:
    """Returns the API path of an environment."""
    return f"/api/v1/projects/{path_part(project)}/environments/{path_part(env)}"


def secret_path(project: str, env: str, route: str, key: str) -> str:
    """Returns the API path of a key under ``route`` (secrets, history, rollback). The key is
    checked here first: URL libraries collapse "a/../b" before the server could refuse it."""
    validate_key_name(key)
    return f"{env_path(project, env)}/{route}/{key_part(key)}"


def _read_value(value: str) -> str:
    if value != "-":
        return value
    data = sys.stdin.read()
    # One trailing newline is what `echo` and here-strings add; keep everything else.
    return data[:-1] if data.endswith("\n") else data


@secrets_app.command("set")
@handle_errors
def set_secret(
    key: KeyArg,
    value: Annotated[str, typer.Argument(help="The value, or - to read it from stdin.")],
    project: ProjectOpt,
    env: EnvOpt,
    comment: CommentOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a new version of a secret."""
    body = {"value": _read_value(value), "comment": comment}
    with api() as client:
        data = client.send_json("PUT", secret_path(project, env, "secrets", key), body)
    emit(data, as_json, f"{data['outcome'].capitalize()} {key} (version {data['version']})")


@secrets_app.command("get")
@handle_errors
def get_secret(
    key: KeyArg,
    project: ProjectOpt,
    env: EnvOpt,
    version: Annotated[int | None, typer.Option("--version", help="A past version.")] = None,
    expand: Annotated[bool, typer.Option("--expand", help="Expand ${...} references.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a secret's value (the current version unless --version)."""
    params: dict[str, object] = {"expand": "true" if expand else "false"}
    if version is not None:
        params["version"] = version
    with api() as client:
        data = client.get_json(secret_path(project, env, "secrets", key), **params)
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(data["value"] + "\n")


@secrets_app.command("list")
@handle_errors
def list_secrets(project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """List the keys of an environment (no values)."""
    with api() as client:
        data = client.get_json(f"{env_path(project, env)}/secrets")
    if as_json:
        print_json(data)
        return
    rows = [(s["key"], s["version"], s["updated_at"]) for s in data["secrets"]]
    print_table(f"{project} / {env}", ("key", "version", "updated"), rows)


@secrets_app.command("delete")
@handle_errors
def delete_secret(key: KeyArg, project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """Delete a secret and all its versions (irreversible)."""
    with api() as client:
        data = client.request("DELETE", secret_path(project, env, "secrets", key)).json()
    emit(data, as_json, f"Deleted {key} ({data['versions_destroyed']} versions destroyed)")


@secrets_app.command("history")
@handle_errors
def history(key: KeyArg, project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """Show every version of a secret: who wrote it, when and why (no values)."""
    with api() as client:
        data = client.get_json(secret_path(project, env, "history", key))
    if as_json:
        print_json(data)
        return
    rows = [
        (v["version"], v["created_at"], f"{v['author']['kind']} {v['author']['id']}", v["comment"])
        for v in data["versions"]
    ]
    print_table(f"History of {key}", ("version", "written", "author", "comment"), rows)


@secrets_app.command("rollback")
@handle_errors
def rollback(
    key: KeyArg,
    project: ProjectOpt,
    env: EnvOpt,
    version: Annotated[int, typer.Option("--version", help="Version to restore.")],
    comment: CommentOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a new version that carries an earlier version's value."""
    if version < 1:
        raise InvalidInput("--version must be a positive integer", field="version")
    body = {"version": version, "comment": comment}
    with api() as client:
        data = client.send_json("POST", secret_path(project, env, "rollback", key), body)
    emit(data, as_json, f"Rolled {key} back to version {version} (now version {data['version']})")
