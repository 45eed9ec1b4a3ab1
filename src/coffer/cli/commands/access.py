"""``coffer machines`` (machine identities and their tokens) and ``coffer grants`` (access
to one project or environment, for a member or a machine)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.commands.tokens import issued_banner
from coffer.cli.common import ExpiresOpt, JsonOpt, YesOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time
from coffer.domain.errors import InvalidInput

machines_app = typer.Typer(
    help="Machine identities (CI, services) and their tokens.", no_args_is_help=True
)
grants_app = typer.Typer(
    help="Give a member or machine access to a project or environment.", no_args_is_help=True
)

MachineArg = Annotated[str, typer.Argument(help="The machine's name.")]
ScopeHelp = "project[:environment]:none|read|write, e.g. app:production:read."


def scope_text(grant: dict[str, Any]) -> str:
    """``project[:environment]:access`` of a grant."""
    where = grant["project"] + (f":{grant['environment']}" if grant["environment"] else "")
    return f"{where}:{grant['access']}"


def _utc_iso(text: str | None, field: str) -> str | None:
    """Returns an ISO 8601 time with an offset (UTC when none is given); raises InvalidInput
    naming ``field`` when ``text`` is not one."""
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 time such as 2026-01-31T18:00:00Z", field=field
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


@machines_app.command("create")
@handle_errors
def create_machine(
    name: MachineArg,
    scopes: Annotated[
        list[str], typer.Option("--scope", help=f"Repeatable. {ScopeHelp}", show_default=False)
    ],
    allow_ips: Annotated[
        list[str] | None,
        typer.Option("--allow-ip", help="Repeatable. Accept its tokens only from this CIDR."),
    ] = None,
    valid_after: Annotated[
        str | None, typer.Option("--valid-after", help="ISO 8601 time (UTC unless an offset).")
    ] = None,
    valid_before: Annotated[
        str | None, typer.Option("--valid-before", help="ISO 8601 time (UTC unless an offset).")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="What it is.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a machine identity that reaches only its scopes (admins and owners)."""
    body = {
        "name": name,
        "scopes": scopes,
        "description": description,
        "allowed_ips": allow_ips or [],
        "valid_after": _utc_iso(valid_after, "valid_after"),
        "valid_before": _utc_iso(valid_before, "valid_before"),
    }
    with api() as client:
        data = client.send_json("POST", "/api/v1/machines", body)
    ips = f"; tokens accepted only from {', '.join(data['allowed_ips'])}" if allow_ips else ""
    emit(
        data,
        as_json,
        f"Created machine {data['name']} with {', '.join(scopes)}{ips}.\n"
        f"Issue it a token with `coffer machines token {data['name']}`.",
    )


@machines_app.command("list")
@handle_errors
def list_machines(as_json: JsonOpt = False) -> None:
    """List machine identities with their grants."""
    with api() as client:
        data = client.get_json("/api/v1/machines")
    if as_json:
        print_json(data)
        return
    rows = [
        (
            m["name"],
            ", ".join(scope_text(g) for g in m["grants"]),
            ", ".join(m["allowed_ips"]) or "any",
            short_time(m["valid_after"]),
            short_time(m["valid_before"]),
            m["description"] or "",
        )
        for m in data["machines"]
    ]
    columns = ("name", "scopes", "allowed IPs", "valid after", "valid before", "description")
    print_table("Machines", columns, rows)


@machines_app.command("delete")
@handle_errors
def delete_machine(name: MachineArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Delete a machine identity; its tokens stop working at once."""
    if not yes and not typer.confirm(f"Delete machine {name} and revoke its tokens?"):
        raise typer.Exit(1)
    with api() as client:
        data = client.request("DELETE", f"/api/v1/machines/{path_part(name)}").json()
    emit(data, as_json, f"Deleted machine {name} ({data['tokens_revoked']} token(s) revoked)")


@machines_app.command("token")
@handle_errors
def machine_token(
    name: MachineArg,
    expires: ExpiresOpt = None,
    token_name: Annotated[
        str | None, typer.Option("--name", help="Name the token, e.g. github-actions.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Issue a token for a machine (shown once); it never expires unless --expires."""
    body = {"name": token_name, "expires_in": expires}
    with api() as client:
        data = client.send_json("POST", f"/api/v1/machines/{path_part(name)}/tokens", body)
        addr = client.addr
    hint = (
        f"Give it to the machine as COFFER_TOKEN (with COFFER_ADDR={addr}), e.g. as a CI secret.\n"
        f"Revoke it with `coffer tokens revoke {data['id']}`."
    )
    emit(data, as_json, issued_banner(f"token {data['name']!r} for machine {name}", data, hint))


@grants_app.command("add")
@handle_errors
def add_grant(
    scope: Annotated[str, typer.Option("--scope", help=ScopeHelp)],
    member: Annotated[
        str | None, typer.Option("--member", help="The member's e-mail address.")
    ] = None,
    machine: Annotated[str | None, typer.Option("--machine", help="The machine's name.")] = None,
    expires: ExpiresOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Grant a member or a machine access to a project or one environment.

    It replaces the grant the identity had there; none shuts it out, even where its role
    would let it read."""
    if (member is None) == (machine is None):
        raise InvalidInput("give exactly one of --member EMAIL or --machine NAME", field="member")
    body = {"member": member, "machine": machine, "scope": scope, "expires_in": expires}
    with api() as client:
        data = client.send_json("POST", "/api/v1/grants", body)
    until = f" until {data['expires_at']}" if data["expires_at"] else ""
    emit(
        data,
        as_json,
        f"Granted {data['identity']} {scope_text(data)}{until} (grant {data['id']})",
    )


@grants_app.command("list")
@handle_errors
def list_grants(as_json: JsonOpt = False) -> None:
    """List every grant, expired ones included."""
    with api() as client:
        data = client.get_json("/api/v1/grants")
    if as_json:
        print_json(data)
        return
    rows = [
        (
            g["id"],
            f"{g['identity_kind']} {g['identity']}",
            scope_text(g),
            short_time(g["expires_at"], "never"),
            short_time(g["created_at"]),
        )
        for g in data["grants"]
    ]
    print_table("Grants", ("id", "who", "scope", "expires", "created"), rows, whole=("id", "scope"))


@grants_app.command("revoke")
@handle_errors
def revoke_grant(
    grant_id: Annotated[str, typer.Argument(help="The grant's id (from the list).")],
    as_json: JsonOpt = False,
) -> None:
    """Delete a grant; it stops applying at once."""
    with api() as client:
        client.request("DELETE", f"/api/v1/grants/{path_part(grant_id)}")
    emit({"id": grant_id, "revoked": True}, as_json, f"Revoked grant {grant_id}")
