"""``coffer approvals``: separation of duties. Ask for a second person's approval of an
operation (``env.export PROJECT/ENV``, ``root.rotate``); an admin other than you approves
or denies it; you then use it once within 24 hours (``coffer export --approval ID``,
``coffer rotate-root --approval ID``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.commands.requests import who
from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time

approvals_app = typer.Typer(
    help="Second approvals for separated duties (environment export, root key rotation).",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="The approval's id (from `coffer approvals list`).")]
BASE = "/api/v1/approvals"


@approvals_app.callback()
def _approvals_app_group() -> None:
    """Second approvals for separated duties (environment export, root key rotation)."""


def _what(data: dict[str, Any]) -> str:
    return str(data["operation"]) + (f" of {data['target']}" if data["target"] else "")


def _how_to_use(data: dict[str, Any]) -> str:
    if data["operation"] == "root.rotate":
        return f"coffer rotate-root --approval {data['id']}"
    project, env = data["target"].split("/", 1)
    return f"coffer export -p {project} -e {env} --approval {data['id']}"


@approvals_app.command("request")
@handle_errors
def request_approval(
    operation: Annotated[str, typer.Argument(help="env.export or root.rotate.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (1 to 500 characters).")],
    target: Annotated[
        str | None, typer.Argument(help="PROJECT/ENV for env.export; none for root.rotate.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for a second person's approval of an operation that a policy says needs two."""
    body = {"operation": operation, "target": target, "reason": reason}
    with api() as client:
        data = client.send_json("POST", BASE, body)
    emit(
        data,
        as_json,
        f"Asked for approval {data['id']} of {_what(data)}.\n"
        f"An admin other than you approves it with `coffer approvals approve {data['id']}`; "
        f"then run `{_how_to_use(data)}` within 24 hours (once).",
    )


@approvals_app.command("list")
@handle_errors
def list_approvals(
    status: Annotated[
        str, typer.Option("--status", help="pending, approved, denied, used, expired or all.")
    ] = "all",
    as_json: JsonOpt = False,
) -> None:
    """List approvals, newest first: all of the organization for admins, your own
    otherwise."""
    with api() as client:
        data = client.get_json(BASE, status=status)
    if as_json:
        print_json(data)
        return
    rows = [
        (
            a["id"],
            _what(a),
            who(a["requested_by"]),
            a["status"],
            who(a["decided_by"]),
            short_time(a["expires_at"]),
            a["reason"],
        )
        for a in data["approvals"]
    ]
    columns = ("id", "operation", "requested by", "status", "decided by", "until", "reason")
    print_table("Approvals", columns, rows, whole=("id",))


@approvals_app.command("approve")
@handle_errors
def approve(
    approval_id: IdArg,
    note: Annotated[str | None, typer.Option("--note", help="A note for the log.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve someone else's pending approval (admins): valid for 24 hours, once."""
    with api() as client:
        data = client.send_json("POST", f"{BASE}/{path_part(approval_id)}/approve", {"note": note})
    emit(
        data,
        as_json,
        f"Approved {_what(data)} for {who(data['requested_by'])} until {data['expires_at']} "
        f"(approval {data['id']}, usable once)",
    )


@approvals_app.command("deny")
@handle_errors
def deny(
    approval_id: IdArg,
    note: Annotated[str, typer.Option("--note", help="Why it is denied (required).")],
    as_json: JsonOpt = False,
) -> None:
    """Deny someone else's pending approval (admins), saying why."""
    with api() as client:
        data = client.send_json("POST", f"{BASE}/{path_part(approval_id)}/deny", {"note": note})
    emit(data, as_json, f"Denied {_what(data)} for {who(data['requested_by'])} ({data['id']})")
