"""``coffer run -- CMD``: run a program with an environment's secrets as variables."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from coffer.cli.commands.secrets import ReasonOpt, env_path, reason_params
from coffer.cli.common import EnvOpt, ProjectOpt, api, handle_errors
from coffer.domain.errors import InvalidInput


def secret_environment(values: dict[str, str]) -> dict[str, str]:
    """Returns the variables for ``values`` by the documented rule (db/password ->
    DB_PASSWORD); raises InvalidInput when two keys map to one name."""
    from coffer.domain.names import env_var_names

    names = env_var_names(values)
    return {names[key]: value for key, value in values.items()}


@handle_errors
def run(
    project: ProjectOpt,
    env: EnvOpt,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments.")],
    reason: ReasonOpt = None,
) -> None:
    """Run COMMAND with the secrets as environment variables; exits with its exit code.
    --reason (or COFFER_REASON) states why, where the environment's policy wants reads to."""
    if not command:
        raise InvalidInput("give the command to run after --", field="command")
    params = {"format": "json", "expand": "true", **reason_params(reason)}
    with api() as client:
        response = client.request("GET", f"{env_path(project, env)}/export", params=params)
    variables = secret_environment(response.json())
    child_env = {**os.environ, **variables}
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, child_env)  # noqa: S606 - running the user's command is the point
    except FileNotFoundError:
        sys.stderr.write(f"error: command not found: {command[0]}\n")
        raise typer.Exit(127) from None
    except PermissionError:
        sys.stderr.write(f"error: permission denied: {command[0]}\n")
        raise typer.Exit(126) from None
