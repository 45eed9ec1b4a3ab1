"""``coffer access``: ask for time-bound access to a project or environment, for a reason;
an admin who is not the requester approves or denies it; the requester may cancel it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time

access_app = typer.Typer(
    help="Access requests: ask for time-bound access; approve or deny others'.",
    no_args_is_help=True,
)

IdArg = Annotated[str, typer.Argument(help="The request's id (from `coffer access list`).")]
NoteOpt = Annotated[str | None, typer.Option("--note", help="Why (kept with the decision).")]
BASE = "/api/v1/access-requests"


@access_app.callback()
def _access_app_group() -> None:
    """Access requests: ask for time-bound access; approve or deny others'."""


def duration_text(seconds: int) -> str:
    """``8h``, ``7d``, ``90m`` or ``45s``: the largest unit that divides ``seconds``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def target_text(request: dict[str, Any]) -> str:
    """``project`` or ``project/environment``."""
    env = request["environment"]
    return str(request["project"]) + (f"/{env}" if env else "")


def who(person: dict[str, Any] | None) -> str:
    """A person's e-mail address, else their id (empty for nobody)."""
    if not person:
        return ""
    return str(person["name"] or person["id"])


@access_app.command("request")
@handle_errors
def request_access(
    project: Annotated[str, typer.Argument(help="The project.")],
    reason: Annotated[str, typer.Option("--reason", help="Why you need it (1-500 characters).")],
    duration: Annotated[str, typer.Option("--for", help="How long: 5m to 30d, e.g. 8h.")],
    environment: Annotated[
        str | None, typer.Argument(help="One environment (default: the whole project).")
    ] = None,
    access: Annotated[str, typer.Option("--access", help="read or write.")] = "read",
    as_json: JsonOpt = False,
) -> None:
    """Ask for read or write access to a project or one environment, for a reason and a
    duration. An admin who is not you approves it; the access then ends by itself."""
    body = {
        "project": project,
        "environment": environment,
        "access": access,
        "reason": reason,
        "duration": duration,
    }
    with api() as client:
        data = client.send_json("POST", BASE, body)
    emit(
        data,
        as_json,
        f"Requested {data['access']} access to {target_text(data)} for "
        f"{duration_text(data['duration_seconds'])} (request {data['id']}).\n"
        f"An admin other than you approves it with `coffer access approve {data['id']}`.",
    )


@access_app.command("list")
@handle_errors
def list_requests(
    status: Annotated[
        str,
        typer.Option("--status", help="pending, approved, denied, cancelled, expired or all."),
    ] = "all",
    as_json: JsonOpt = False,
) -> None:
    """List access requests, newest first: all of the organization for admins, your own
    otherwise."""
    with api() as client:
        data = client.get_json(BASE, status=status)
    if as_json:
        print_json(data)
        return
    rows = [
        (
            r["id"],
            who(r["requester"]),
            target_text(r),
            r["access"],
            duration_text(r["duration_seconds"]),
            r["status"],
            who(r["decided_by"]),
            short_time(r["expires_at"]),
            r["reason"],
        )
        for r in data["requests"]
    ]
    columns = ("id", "requester", "where", "access", "for", "status", "decided by", "until")
    print_table("Access requests", (*columns, "reason"), rows, whole=("id",))


def _decided(data: dict[str, Any], verb: str) -> str:
    text = f"{verb} request {data['id']} of {who(data['requester'])}"
    if data["status"] == "approved":
        text += (
            f": {data['access']} access to {target_text(data)} until {data['expires_at']} "
            f"(grant {data['grant_id']})"
        )
    return text


@access_app.command("approve")
@handle_errors
def approve(request_id: IdArg, note: NoteOpt = None, as_json: JsonOpt = False) -> None:
    """Approve someone else's pending request (admins): the access starts now and ends by
    itself after the requested duration."""
    with api() as client:
        data = client.send_json("POST", f"{BASE}/{path_part(request_id)}/approve", {"note": note})
    emit(data, as_json, _decided(data, "Approved"))


@access_app.command("deny")
@handle_errors
def deny(
    request_id: IdArg,
    note: Annotated[str, typer.Option("--note", help="Why it is denied (required).")],
    as_json: JsonOpt = False,
) -> None:
    """Deny someone else's pending request (admins), saying why."""
    with api() as client:
        data = client.send_json("POST", f"{BASE}/{path_part(request_id)}/deny", {"note": note})
    emit(data, as_json, _decided(data, "Denied"))


@access_app.command("cancel")
@handle_errors
def cancel(request_id: IdArg, as_json: JsonOpt = False) -> None:
    """Withdraw your own pending request."""
    with api() as client:
        data = client.send_json("POST", f"{BASE}/{path_part(request_id)}/cancel", None)
    emit(data, as_json, f"Cancelled request {data['id']}")
