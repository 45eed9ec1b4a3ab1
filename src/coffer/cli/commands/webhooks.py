"""``coffer webhooks``: signed HTTP callbacks for audit events (admins and owners)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.common import JsonOpt, YesOpt, api, handle_errors
from coffer.cli.exit_codes import FAILURE
from coffer.cli.output import emit, print_json, print_table, short_time

webhooks_app = typer.Typer(
    help="Send signed audit events to your HTTP endpoints.", no_args_is_help=True
)

IdArg = Annotated[str, typer.Argument(help="The webhook's id (see `coffer webhooks list`).")]


def _path(webhook_id: str, suffix: str = "") -> str:
    return f"/api/v1/webhooks/{path_part(webhook_id.strip())}{suffix}"


def _events(texts: list[str]) -> list[str]:
    """``--events a,b --events c`` as ``[a, b, c]``."""
    return [item.strip() for text in texts for item in text.split(",") if item.strip()]


@webhooks_app.command("add")
@handle_errors
def add(
    url: Annotated[str, typer.Argument(help="http:// or https:// URL that receives the POSTs.")],
    events: Annotated[
        list[str],
        typer.Option(
            "--events",
            help="Comma-separated, repeatable: secret.read, secret.*, anomaly.detected or *.",
            show_default=False,
        ),
    ],
    project: Annotated[
        str | None, typer.Option("--project", "-p", help="Only this project's events.")
    ] = None,
    description: Annotated[
        str | None, typer.Option("--description", help="What it is for.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a webhook; prints its signing secret once."""
    body = {"url": url, "events": _events(events), "project": project, "description": description}
    with api() as client:
        data = client.send_json("POST", "/api/v1/webhooks", body)
    emit(
        data,
        as_json,
        f"Created webhook {data['id']} for {', '.join(data['events'])}"
        + (f" in project {data['project']}" if data["project"] else "")
        + ".\nIts signing secret is shown once; store it where the receiver can read it:\n\n"
        f"    {data['secret']}\n\n"
        "Each request carries X-Coffer-Timestamp and X-Coffer-Signature: sha256=HMAC-SHA256"
        "(secret, timestamp + '.' + body); refuse timestamps older than 5 minutes.",
    )


@webhooks_app.command("list")
@handle_errors
def list_webhooks(as_json: JsonOpt = False) -> None:
    """List the organization's webhooks."""
    with api() as client:
        data = client.get_json("/api/v1/webhooks")
    if as_json:
        print_json(data)
        return
    rows = [
        (
            w["id"],
            w["url"],
            ",".join(w["events"]),
            w["project"] or "(all)",
            w["description"] or "",
            short_time(w["created_at"]),
        )
        for w in data["webhooks"]
    ]
    print_table(
        "Webhooks",
        ("id", "url", "events", "project", "description", "created"),
        rows,
        whole=("id",),
    )


@webhooks_app.command("remove")
@handle_errors
def remove(webhook_id: IdArg, yes: YesOpt = False, as_json: JsonOpt = False) -> None:
    """Remove a webhook with its delivery log (pending deliveries are dropped)."""
    if not yes and not typer.confirm(f"Remove webhook {webhook_id} and its delivery log?"):
        raise typer.Exit(1)
    with api() as client:
        client.request("DELETE", _path(webhook_id))
    emit({"id": webhook_id, "removed": True}, as_json, f"Removed webhook {webhook_id}")


@webhooks_app.command("test")
@handle_errors
def test(webhook_id: IdArg, as_json: JsonOpt = False) -> None:
    """Send a signed webhook.tested event now; exits 1 when it is not delivered."""
    with api() as client:
        data = client.send_json("POST", _path(webhook_id, "/test"), None)
    if data["delivered"]:
        text = f"Delivered: HTTP {data['status_code']} in {data['latency_ms']:.0f} ms"
    else:
        text = f"Not delivered: {data['error']}"
    emit(data, as_json, text)
    if not data["delivered"]:
        raise typer.Exit(FAILURE)


@webhooks_app.command("deliveries")
@handle_errors
def deliveries(
    webhook_id: IdArg,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first (1-1000).")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Show a webhook's delivery log: state, attempts, status code, latency."""
    with api() as client:
        data = client.get_json(_path(webhook_id, "/deliveries"), limit=limit)
    if as_json:
        print_json(data)
        return
    print_table(
        "Deliveries",
        ("time", "event", "entry", "state", "attempts", "status", "latency", "error"),
        [_delivery_row(d) for d in data["deliveries"]],
        whole=("entry",),
    )


def _delivery_row(delivery: dict[str, Any]) -> tuple[Any, ...]:
    latency = delivery["latency_ms"]
    return (
        short_time(delivery["created_at"]),
        delivery["event"],
        delivery["entry_id"],
        delivery["state"],
        delivery["attempts"],
        delivery["status_code"] or "",
        f"{latency:.0f} ms" if latency is not None else "",
        delivery["error"] or "",
    )
