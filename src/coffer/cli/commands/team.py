"""``coffer members`` (invite, change role, remove, transfer ownership) and ``coffer org``."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.common import ExpiresOpt, JsonOpt, YesOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time
from coffer.domain.errors import InvalidInput

members_app = typer.Typer(
    help="Invite people, change their roles, remove them.", no_args_is_help=True
)
org_app = typer.Typer(help="Show, configure or delete your organization.", no_args_is_help=True)

EmailArg = Annotated[str, typer.Argument(help="The member's e-mail address.")]
RoleHelp = "admin (reads and writes, manages projects and the team) or viewer (reads)."


class Switch(StrEnum):
    """An on/off setting."""

    ON = "on"
    OFF = "off"


def _member_path(email: str) -> str:
    return f"/api/v1/members/{path_part(email.strip())}"


@members_app.command("list")
@handle_errors
def list_members(as_json: JsonOpt = False) -> None:
    """List members and pending invitations (admins and owners)."""
    with api() as client:
        data = client.get_json("/api/v1/members")
    if as_json:
        print_json(data)
        return
    members = [
        (m["email"], m["role"], "yes" if m["mfa_enabled"] else "no", short_time(m["created_at"]))
        for m in data["members"]
    ]
    print_table("Members", ("e-mail", "role", "MFA", "joined"), members)
    if data["invitations"]:
        invitations = [
            (i["email"], i["role"], short_time(i["created_at"]), short_time(i["expires_at"]))
            for i in data["invitations"]
        ]
        print_table("Pending invitations", ("e-mail", "role", "invited", "expires"), invitations)


@members_app.command("invite")
@handle_errors
def invite(
    email: Annotated[str, typer.Argument(help="Whom to invite.")],
    role: Annotated[str, typer.Option("--role", metavar="admin|viewer", help=RoleHelp)],
    expires: ExpiresOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Invite a person; prints the one-time invitation token to pass on (default life 7d)."""
    body = {"email": email, "role": role, "expires_in": expires}
    with api() as client:
        data = client.send_json("POST", "/api/v1/members/invite", body)
        addr = client.addr
    emit(
        {**data, "addr": addr},
        as_json,
        f"Invited {data['email']} as {data['role']}; the invitation expires {data['expires_at']}."
        "\n\nInvitation token (shown once; pass it on privately, it is their way in):\n\n"
        f"    {data['token']}\n\n"
        f"They join with `coffer accept-invite TOKEN --addr {addr}`.",
    )


@members_app.command("role")
@handle_errors
def change_role(
    email: EmailArg,
    role: Annotated[str, typer.Argument(metavar="ROLE", help=RoleHelp)],
    as_json: JsonOpt = False,
) -> None:
    """Change a member's role (admin or viewer)."""
    with api() as client:
        data = client.send_json("PATCH", _member_path(email), {"role": role})
    emit(data, as_json, f"{data['email']} is now {data['role']}")


@members_app.command("remove")
@handle_errors
def remove(email: EmailArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Remove a member with their tokens, API keys and grants."""
    if not yes and not typer.confirm(f"Remove {email} with their tokens, API keys and grants?"):
        raise typer.Exit(1)
    with api() as client:
        client.request("DELETE", _member_path(email))
    emit({"email": email, "removed": True}, as_json, f"Removed {email}")


def _secret_name(entry: dict[str, Any]) -> str:
    return f"{entry['project']}/{entry['environment']}/{entry['key']}"


def _shown_of(shown: int, total: int) -> str:
    return f" (first {shown} of {total})" if shown < total else ""


def _print_offboarding(data: dict[str, Any]) -> None:
    """What an offboarding revoked, the secrets now due for rotation and those read."""
    sys.stdout.write(
        f"Offboarded {data['email']} ({data['role']}): revoked {data['sessions_revoked']} "
        f"session(s), {data['tokens_revoked']} CLI token(s), {data['api_keys_revoked']} API "
        f"key(s) and {data['grants_revoked']} grant(s); they are no longer a member.\n"
    )
    flagged, read = data["flagged"], data["read"]
    sys.stdout.write(
        f"{data['secrets_flagged']} secret(s) they could read are now due for rotation"
        f"{_shown_of(len(flagged), data['secrets_flagged'])}.\n"
    )
    print_table(
        "Due for rotation now",
        ("secret", "version"),
        [(_secret_name(s), s["version"]) for s in flagged],
        whole=("secret",),
    )
    sys.stdout.write(
        f"{data['secrets_read']} secret(s) they read, from the audit log"
        f"{_shown_of(len(read), data['secrets_read'])}.\n"
    )
    print_table(
        "Secrets they read",
        ("secret", "reads", "last read"),
        [(_secret_name(s), s["reads"], short_time(s["last_read_at"])) for s in read],
        whole=("secret",),
    )


@members_app.command("offboard")
@handle_errors
def offboard(email: EmailArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Offboard a member in one step: revoke their sessions, tokens, API keys and grants,
    remove them, flag every secret they could read for rotation and list those they read."""
    if not yes:
        if not sys.stdin.isatty():
            raise InvalidInput(
                "offboarding asks for confirmation: pass --yes when not at a terminal",
                field="yes",
            )
        question = (
            f"Offboard {email}: revoke their sessions, tokens, API keys and grants, remove "
            "them, and flag every secret they could read for rotation?"
        )
        if not typer.confirm(question):
            raise typer.Exit(1)
    with api() as client:
        data = client.send_json("POST", f"{_member_path(email)}/offboard", None)
    if as_json:
        print_json(data)
        return
    _print_offboarding(data)


@members_app.command("transfer")
@handle_errors
def transfer(email: EmailArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Make a member the owner; the previous owner becomes an admin (owner only)."""
    if not yes and not typer.confirm(f"Make {email} the owner (the owner becomes an admin)?"):
        raise typer.Exit(1)
    with api() as client:
        data = client.send_json("POST", "/api/v1/members/transfer-ownership", {"email": email})
    emit(data, as_json, f"{data['owner']} is now the owner (the previous owner is an admin)")


@org_app.command("show")
@handle_errors
def show(as_json: JsonOpt = False) -> None:
    """Show your organization."""
    with api() as client:
        data = client.get_json("/api/v1/org")
    if as_json:
        print_json(data)
        return
    mfa = "required" if data["require_mfa"] else "not required"
    hours = data.get("working_hours") or "not set"
    sys.stdout.write(
        f"Organization {data['name']} ({data['id']}), created {data['created_at']}; MFA {mfa}"
        f"; working hours {hours}\n"
    )


@org_app.command("require-mfa")
@handle_errors
def require_mfa(
    setting: Annotated[Switch, typer.Argument(help="on or off.")],
    as_json: JsonOpt = False,
) -> None:
    """Require every member to use MFA (on) or not (off); admins and owners."""
    required = setting is Switch.ON
    with api() as client:
        data = client.send_json("PATCH", "/api/v1/org", {"require_mfa": required})
    text = (
        "MFA is now required: members without it must run `coffer mfa setup` before anything else"
        if required
        else "MFA is no longer required"
    )
    emit(data, as_json, text)


@org_app.command("working-hours")
@handle_errors
def working_hours(
    hours: Annotated[
        str,
        typer.Argument(
            metavar="HOURS|off",
            help="Such as 'Mon-Fri 09:00-18:00 Europe/Paris' (zone defaults to UTC), or off.",
        ),
    ],
    as_json: JsonOpt = False,
) -> None:
    """Set the working hours outside which production reads are flagged as anomalies."""
    with api() as client:
        data = client.send_json("PATCH", "/api/v1/org", {"working_hours": hours})
    text = (
        f"Working hours are now {data['working_hours']}: production reads outside them record "
        "anomaly.detected"
        if data["working_hours"]
        else "Working hours cleared: reads are no longer checked against them"
    )
    emit(data, as_json, text)


@org_app.command("delete")
@handle_errors
def delete(
    confirm: Annotated[str, typer.Option("--confirm", help="The organization's name, to confirm.")],
    as_json: JsonOpt = False,
) -> None:
    """Delete the organization and everything in it (owner only; irreversible)."""
    with api() as client:
        client.send_json("DELETE", "/api/v1/org", {"confirm": confirm})
    emit(
        {"organization": confirm, "deleted": True},
        as_json,
        f"Deleted organization {confirm} and everything in it",
    )
