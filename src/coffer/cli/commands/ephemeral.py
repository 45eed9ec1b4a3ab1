"""``coffer ephemeral``: standalone secrets named across the organization, each with a time to
live (one day unless --ttl) and optionally a read limit; and ``coffer prune``."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from coffer.cli.client import key_part
from coffer.cli.commands.secrets import (
    LIMIT_COLUMNS,
    BurnOpt,
    NoDeleteOpt,
    NoReadsOpt,
    ReadsOpt,
    TtlOpt,
    change_fields,
    describe_limits,
    head_info,
    limit_cells,
    limit_fields,
    plural,
    print_head_info,
    read_value,
)
from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time
from coffer.domain.errors import InvalidInput
from coffer.domain.names import validate_key_name

ephemeral_app = typer.Typer(
    help="Standalone secrets that expire (one day unless --ttl) or burn after N reads.",
    no_args_is_help=True,
)

KeyArg = Annotated[str, typer.Argument(help="The ephemeral secret's name, e.g. deploy/otp.")]


def ephemeral_path(key: str) -> str:
    """Returns the API path of an ephemeral secret. The name is checked here first: URL
    libraries collapse "a/../b" before the server could refuse it."""
    validate_key_name(key)
    return f"/api/v1/ephemeral/{key_part(key)}"


@ephemeral_app.command("set")
@handle_errors
def set_ephemeral(
    key: KeyArg,
    value: Annotated[
        str | None,
        typer.Argument(help="The value, or - for stdin (a terminal asks when omitted)."),
    ] = None,
    ttl: TtlOpt = None,
    reads: ReadsOpt = None,
    no_delete: NoDeleteOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Create an ephemeral secret (its name must not be in use)."""
    body: dict[str, Any] = {"key": key, "value": read_value(value)}
    body.update(limit_fields(ttl, reads, no_delete))
    with api() as client:
        data = client.send_json("POST", "/api/v1/ephemeral", body)
    emit(data, as_json, f"Created ephemeral secret {key}: {describe_limits(data['limits'])}")


@ephemeral_app.command("get")
@handle_errors
def get_ephemeral(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Print an ephemeral secret's value; counts one read (the last allowed one burns or
    seals it)."""
    with api() as client:
        data = client.get_json(ephemeral_path(key))
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(data["value"] + "\n")


@ephemeral_app.command("info")
@handle_errors
def info_ephemeral(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Show an ephemeral secret's status, read count, reads remaining and expiry without
    reading it (nothing is counted)."""
    with api() as client:
        response = client.head(ephemeral_path(key), what=f"ephemeral secret {key!r}")
    print_head_info(head_info(response, key), as_json)


@ephemeral_app.command("list")
@handle_errors
def list_ephemeral(as_json: JsonOpt = False) -> None:
    """List the organization's live ephemeral secrets (no values)."""
    with api() as client:
        data = client.get_json("/api/v1/ephemeral")
    if as_json:
        print_json(data)
        return
    rows = [
        (s["key"], *limit_cells(s["limits"]), short_time(s["created_at"])) for s in data["secrets"]
    ]
    print_table("Ephemeral secrets", ("key", *LIMIT_COLUMNS, "created"), rows)


@ephemeral_app.command("update")
@handle_errors
def update_ephemeral(
    key: KeyArg,
    value: Annotated[
        str | None,
        typer.Option("--value", help="A new value (its reads count afresh); - reads stdin."),
    ] = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="A new time to live, counted from now.")
    ] = None,
    reads: Annotated[int | None, typer.Option("--reads", help="A new read limit.")] = None,
    no_reads: NoReadsOpt = False,
    reset: Annotated[
        bool, typer.Option("--reset", help="Zero the read count and unseal it.")
    ] = False,
    burn: BurnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replace an ephemeral secret's value and/or change its limits (its creator or an
    admin only)."""
    body = change_fields(ttl=ttl, reads=reads, no_reads=no_reads, burn=burn)
    if reset:
        body["reset"] = True
    if value is not None:
        body["value"] = read_value(value)
    if not body:
        raise InvalidInput(
            "nothing to change: give --value, --ttl, --reads, --no-reads, --reset, --burn or --seal"
        )
    with api() as client:
        data = client.send_json("PATCH", ephemeral_path(key), body)
    emit(data, as_json, f"Updated ephemeral secret {key}: {describe_limits(data['limits'])}")


@ephemeral_app.command("delete")
@handle_errors
def delete_ephemeral(key: KeyArg, as_json: JsonOpt = False) -> None:
    """Destroy an ephemeral secret (its creator or an admin only)."""
    with api() as client:
        data = client.send_json("DELETE", ephemeral_path(key), None)
    emit(data, as_json, f"Deleted ephemeral secret {key}")


@handle_errors
def prune(as_json: JsonOpt = False) -> None:
    """Destroy every secret, ephemeral secret and share past its time to live now (admins;
    the server also does it every COFFER_PRUNE_INTERVAL seconds)."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/prune", None)
    pruned = data["pruned"]
    text = (
        f"Pruned {plural(pruned['secrets'], 'secret')}, "
        f"{plural(pruned['ephemeral'], 'ephemeral secret')} and "
        f"{plural(pruned['shares'], 'share')}"
    )
    emit(data, as_json, text)
