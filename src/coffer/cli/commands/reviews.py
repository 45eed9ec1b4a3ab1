"""``coffer reviews``: access review campaigns. Start one (every person and machine with its
access and last use), keep or revoke each line (a revoke takes effect at once), sign it off
(its SHA-256 digest goes to the audit log), and print the signed-off evidence."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time

reviews_app = typer.Typer(
    help="Access reviews: list every identity's access, keep or revoke, sign off.",
    no_args_is_help=True,
)

ReviewArg = Annotated[str, typer.Argument(metavar="ID", help="The review's id.")]
_BASE = "/api/v1/access-reviews"


class Choice(StrEnum):
    """A reviewer's decision."""

    KEEP = "keep"
    REVOKE = "revoke"


@reviews_app.callback()
def _reviews_app_group() -> None:
    """Access reviews: list every identity's access, keep or revoke, sign off."""


def _review_path(review_id: str) -> str:
    return f"{_BASE}/{path_part(review_id.strip())}"


def _grants(item: dict[str, Any]) -> str:
    parts = []
    for grant in item["grants"]:
        where = grant["project"] + (f":{grant['environment']}" if grant["environment"] else "")
        until = f" until {short_time(grant['expires_at'])}" if grant["expires_at"] else ""
        parts.append(f"{where}:{grant['access']}{until}")
    return ", ".join(parts)


def _restrictions(item: dict[str, Any]) -> str:
    if item["identity_kind"] == "user":
        return "MFA on" if item["mfa_enabled"] else "MFA off"
    parts = [f"from {', '.join(item['allowed_ips'])}" if item["allowed_ips"] else "any address"]
    if item["valid_after"]:
        parts.append(f"after {short_time(item['valid_after'])}")
    if item["valid_before"]:
        parts.append(f"before {short_time(item['valid_before'])}")
    return "; ".join(parts)


def _decision(item: dict[str, Any]) -> str:
    if not item["decision"]:
        return "undecided"
    by = item["decided_by_name"] or item["decided_by"]
    note = f": {item['note']}" if item["note"] else ""
    return f"{item['decision']} by {by}{note}"


def _status(review: dict[str, Any]) -> str:
    if review["status"] == "signed_off":
        return "signed off"
    return "open, overdue" if review["overdue"] else "open"


def _print_review(data: dict[str, Any]) -> None:
    due = f", due {short_time(data['due_at'])}" if data["due_at"] else ""
    sys.stdout.write(
        f"Access review {data['name']} ({data['id']}): {_status(data)}{due}; started "
        f"{short_time(data['created_at'])} by {data['created_by_name'] or data['created_by']}; "
        f"{data['items_decided']} of {data['items_total']} line(s) decided "
        f"({data['kept']} kept, {data['revoked']} revoked).\n"
    )
    if data["digest"]:
        by = data["signed_off_by_name"] or data["signed_off_by"]
        sys.stdout.write(
            f"Signed off {short_time(data['signed_off_at'])} by {by}; "
            f"digest (SHA-256) {data['digest']}\n"
        )
    rows = [
        (
            item["identity_name"] + ("" if item["exists"] or item["decision"] else " (removed)"),
            item["identity_kind"],
            item["role"] or "",
            _grants(item),
            _restrictions(item),
            short_time(item["last_used_at"], "never"),
            _decision(item),
        )
        for item in data["items"]
    ]
    columns = ("identity", "kind", "role", "grants", "restrictions", "last used", "decision")
    print_table("Lines", columns, rows, whole=("identity",))


@reviews_app.command("start")
@handle_errors
def start(
    name: Annotated[str, typer.Argument(help="The campaign's name, e.g. 'Q1 2026'.")],
    due: Annotated[
        str | None,
        typer.Option("--due", help="Due date (2026-03-31: the end of that day UTC) or time."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start a campaign listing every person and machine with its access and last use."""
    with api() as client:
        data = client.send_json("POST", _BASE, {"name": name, "due": due})
    if as_json:
        print_json(data)
        return
    _print_review(data)
    sys.stdout.write(
        f"Decide each line with `coffer reviews decide {data['id']} IDENTITY keep|revoke`, "
        f"then `coffer reviews sign-off {data['id']}`.\n"
    )


@reviews_app.command("list")
@handle_errors
def list_reviews(
    start: Annotated[
        str | None, typer.Option("--from", help="Only campaigns active from this date.")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", help="Only campaigns active up to this date.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the campaigns, newest first."""
    params = {k: v for k, v in (("from", start), ("to", end)) if v}
    with api() as client:
        data = client.get_json(_BASE, **params)
    if as_json:
        print_json(data)
        return
    rows = [
        (
            r["id"],
            r["name"],
            _status(r),
            short_time(r["created_at"]),
            short_time(r["due_at"]),
            f"{r['items_decided']}/{r['items_total']}",
            r["revoked"],
            short_time(r["signed_off_at"]),
        )
        for r in data["reviews"]
    ]
    columns = ("id", "name", "status", "started", "due", "decided", "revoked", "signed off")
    print_table("Access reviews", columns, rows, whole=("id",))


@reviews_app.command("show")
@handle_errors
def show(review_id: ReviewArg, as_json: JsonOpt = False) -> None:
    """Show a campaign with every line and its decision."""
    with api() as client:
        data = client.get_json(_review_path(review_id))
    if as_json:
        print_json(data)
        return
    _print_review(data)


@reviews_app.command("decide")
@handle_errors
def decide(
    review_id: ReviewArg,
    identity: Annotated[
        str, typer.Argument(help="The line's e-mail, machine name or identity id.")
    ],
    decision: Annotated[
        Choice,
        typer.Argument(help="keep, or revoke (offboards the person or deletes the machine)."),
    ],
    note: Annotated[str | None, typer.Option("--note", help="Why (kept as evidence).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Keep or revoke one line; a revoke takes effect at once. Nobody decides their own line."""
    path = f"{_review_path(review_id)}/items/{path_part(identity.strip())}"
    with api() as client:
        data = client.send_json("POST", path, {"decision": decision.value, "note": note})
    name = data["item"]["identity_name"]
    effects = {
        "kept": f"Kept {name}",
        "already_removed": f"Revoked {name}: it had already been removed, nothing else changed",
        "machine_deleted": f"Revoked {name}: machine deleted, "
        f"{data['tokens_revoked']} token(s) revoked",
    }
    text = effects.get(data["effect"])
    if text is None:
        off = data["offboarding"]
        text = (
            f"Revoked {name}: offboarded ({off['sessions_revoked']} session(s), "
            f"{off['tokens_revoked']} CLI token(s), {off['api_keys_revoked']} API key(s), "
            f"{off['grants_revoked']} grant(s) revoked; {off['secrets_flagged']} secret(s) "
            f"now due for rotation, {off['secrets_read']} read by them)"
        )
    emit(data, as_json, text)


@reviews_app.command("sign-off")
@handle_errors
def sign_off(review_id: ReviewArg, as_json: JsonOpt = False) -> None:
    """Sign a campaign off once every line is decided; it cannot change afterwards."""
    with api() as client:
        data = client.send_json("POST", f"{_review_path(review_id)}/sign-off", None)
    emit(
        data,
        as_json,
        f"Signed off access review {data['name']} ({data['kept']} kept, {data['revoked']} "
        f"revoked); digest (SHA-256) {data['digest']}, also in its review.signed_off audit "
        f"entry. `coffer reviews evidence {data['id']}` prints the evidence it covers.",
    )


@reviews_app.command("evidence")
@handle_errors
def evidence(review_id: ReviewArg) -> None:
    """Print a signed-off campaign's canonical JSON: its SHA-256 is the campaign's digest
    (check with `coffer reviews evidence ID | sha256sum`)."""
    with api() as client:
        response = client.request("GET", f"{_review_path(review_id)}/evidence")
    sys.stdout.buffer.write(response.content)
    sys.stdout.flush()
