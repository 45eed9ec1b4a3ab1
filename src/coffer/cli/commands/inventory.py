"""``coffer inventory``: secrets' owners, systems, sensitivity and rotation periods, as a
table, CSV or JSON; one secret's metadata shown and changed. (``coffer policy`` lives in
``commands.policy``; its group is re-exported here, where ``cli.app`` registers it.)"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from coffer.cli.client import key_part, path_part
from coffer.cli.commands.policy import policy_app as policy_app  # registered by cli.app
from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.inventory_output import inventory_csv, print_inventory
from coffer.cli.output import emit
from coffer.domain.errors import InvalidInput
from coffer.domain.inventory import INVENTORY_FIELDS
from coffer.domain.names import validate_key_name

inventory_app = typer.Typer(
    help="Inventory: secrets' owners, systems, sensitivity and rotation periods. "
    "Without a command: list it (coffer inventory --format csv --out inventory.csv).",
    invoke_without_command=True,
)

KeyArg = Annotated[str, typer.Argument(help="Secret key, e.g. DB_PASSWORD or db/password.")]
ProjectOpt = Annotated[str, typer.Option("--project", "-p", help="Project name.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment name.")]


class Format(StrEnum):
    """The output formats of ``coffer inventory``."""

    TABLE = "table"
    CSV = "csv"
    JSON = "json"


def _write(text: str, out: Path | None) -> None:
    """Writes ``text`` to ``out`` (bytes as given: CSV keeps its CRLF) or to stdout."""
    if out is None:
        sys.stdout.write(text)
        return
    out.write_bytes(text.encode("utf-8"))
    sys.stderr.write(f"Wrote {out}\n")


@inventory_app.callback()
@handle_errors
def list_inventory(
    ctx: typer.Context,
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project.")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="Only environments of this name.")
    ] = None,
    output: Annotated[Format, typer.Option("--format", "-f", help="table, csv or json.")] = (
        Format.TABLE
    ),
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write CSV or JSON to this file.")
    ] = None,
) -> None:
    """List every secret you may read with its owner, system, sensitivity, rotation period,
    last rotation and the policy rules it breaks (no values; no read is recorded)."""
    if ctx.invoked_subcommand is not None:
        return
    if out is not None and output is Format.TABLE:
        raise InvalidInput("--out needs --format csv or --format json", field="out")
    params = {name: value for name, value in (("project", project), ("environment", env)) if value}
    with api() as client:
        data = client.get_json("/api/v1/inventory", **params)
    entries: list[dict[str, Any]] = data["secrets"]
    if output is Format.JSON:
        _write(json.dumps(data, indent=2) + "\n", out)
    elif output is Format.CSV:
        _write(inventory_csv(entries), out)
    else:
        print_inventory(entries, "Inventory")


def inventory_path(project: str, env: str, key: str) -> str:
    """The API path of one secret's inventory (the key checked here first)."""
    validate_key_name(key)
    return (
        f"/api/v1/projects/{path_part(project)}/environments/{path_part(env)}"
        f"/inventory/{key_part(key)}"
    )


def _describe(entry: dict[str, Any]) -> str:
    lines = [("secret", f"{entry['project']}/{entry['environment']}/{entry['key']}")]
    lines += [(name, entry[name]) for name in INVENTORY_FIELDS]
    lines += [
        ("version", entry["current_version"]),
        ("last rotated", entry["last_rotated"]),
        ("breaks", "; ".join(entry["violations"]) or "nothing"),
    ]
    return "\n".join(f"{label + ':':<15}{'' if value is None else value}" for label, value in lines)


@inventory_app.command("show")
@handle_errors
def show(key: KeyArg, project: ProjectOpt, env: EnvOpt, as_json: JsonOpt = False) -> None:
    """Show one secret's inventory metadata and the policy rules it breaks."""
    with api() as client:
        data = client.get_json(inventory_path(project, env, key))
    emit(data, as_json, _describe(data))


@inventory_app.command("set")
@handle_errors
def set_inventory(
    key: KeyArg,
    project: ProjectOpt,
    env: EnvOpt,
    owner: Annotated[str | None, typer.Option("--owner", help="Who answers for it.")] = None,
    system: Annotated[str | None, typer.Option("--system", help="What it unlocks.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="What it is.")] = None,
    sensitivity: Annotated[
        str | None,
        typer.Option("--sensitivity", help="public, internal, confidential or secret."),
    ] = None,
    rotate_every: Annotated[
        str | None, typer.Option("--rotate-every", help="Rotation period: days or 90d.")
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option("--clear", help="Clear a field (owner, system, ...); repeatable."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a secret's inventory metadata (needs write access). Refused, naming the rule,
    when the secret would then break its environment's policy."""
    body = inventory_fields(
        owner=owner,
        system=system,
        description=description,
        sensitivity=sensitivity,
        rotate_every=rotate_every,
    )
    for name in clear or []:
        field = "rotation_days" if name in ("rotate-every", "rotate_every") else name
        if field not in INVENTORY_FIELDS:
            raise InvalidInput(
                f"--clear {name!r}: the fields are {', '.join(INVENTORY_FIELDS)}", field="clear"
            )
        if field in body:
            raise InvalidInput(f"give a value for {field} or clear it, not both", field=field)
        body[field] = None
    if not body:
        raise InvalidInput("give at least one field to set or --clear", field="inventory")
    with api() as client:
        data = client.send_json("PUT", inventory_path(project, env, key), body)
    emit(data, as_json, _describe(data))


def inventory_fields(
    *,
    owner: str | None = None,
    system: str | None = None,
    description: str | None = None,
    sensitivity: str | None = None,
    rotate_every: str | None = None,
) -> dict[str, Any]:
    """The ``inventory`` request fields of the options given (as typed: the server checks
    them, naming the field it refuses)."""
    given = {
        "owner": owner,
        "system": system,
        "description": description,
        "sensitivity": sensitivity,
        "rotation_days": rotate_every,
    }
    return {name: value for name, value in given.items() if value is not None}
