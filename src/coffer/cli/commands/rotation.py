"""``coffer rotation``: which secrets to rotate, and why (``report``, ``due``, ``schedule``),
flags and reminders (``flag``, ``notify``), and rotators (``rotator set|show|remove``,
``rotate``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.client import key_part, path_part
from coffer.cli.common import EnvOpt, JsonOpt, ProjectOpt, YesOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time

rotation_app = typer.Typer(
    help="Rotation: reports, the schedule, reminders and rotators.", no_args_is_help=True
)
rotator_app = typer.Typer(
    help="How a secret is rotated at its source (random values, PostgreSQL role passwords).",
    no_args_is_help=True,
)
rotation_app.add_typer(rotator_app, name="rotator")

KeyArg = Annotated[str, typer.Argument(help="Secret key, e.g. DB_PASSWORD or db/password.")]

ReportProjectOpt = Annotated[str | None, typer.Option("--project", "-p", help="Only this project.")]


def _exposed(entry: dict[str, Any]) -> str:
    """The newest exposure as ``v3 at src/app.py:12 (rule, 2026-01-31 18:00Z)``, with how
    many more there are; "" when none."""
    exposures = entry["exposures"]
    if not exposures:
        return ""
    newest = exposures[0]
    text = (
        f"v{newest['version']} at {newest['location']} "
        f"({newest['rule_id']}, {short_time(newest['detected_at'])})"
    )
    return f"{text} +{len(exposures) - 1} more" if len(exposures) > 1 else text


@rotation_app.command("report")
@handle_errors
def report(project: ReportProjectOpt = None, as_json: JsonOpt = False) -> None:
    """List every secret you may read: current version, last rotation, age, where it leaked
    (found by `coffer scan --match-vault`) and whether to rotate it now. Exposed first."""
    params = {"project": project} if project else {}
    with api() as client:
        data = client.get_json("/api/v1/reports/rotation", **params)
    if as_json:
        print_json(data)
        return
    rows = [
        (
            entry["status"],
            f"{entry['project']}/{entry['environment']}/{entry['key']}",
            entry["current_version"],
            short_time(entry["last_rotated"]),
            entry["age_days"],
            _exposed(entry),
        )
        for entry in data["secrets"]
    ]
    print_table(
        "Rotation report",
        ("status", "secret", "version", "last rotated", "age (days)", "exposed"),
        rows,
        whole=("status", "secret"),
    )


def secret_path(project: str, environment: str, key: str) -> str:
    """``project/environment/key`` as the last segments of a rotation URL."""
    return f"{path_part(project)}/{path_part(environment)}/{key_part(key)}"


def _period(entry: dict[str, Any]) -> str:
    """``90d (policy)``, or ``-`` without a period."""
    if entry["period_days"] is None:
        return "-"
    return f"{entry['period_days']}d ({entry['period_source']})"


def _print_schedule(data: dict[str, Any], title: str) -> None:
    rows = [
        (
            entry["state"],
            f"{entry['project']}/{entry['environment']}/{entry['key']}",
            short_time(entry["last_rotated"]),
            _period(entry),
            short_time(entry["next_due"], "-"),
            entry["why"],
        )
        for entry in data["secrets"]
    ]
    print_table(
        title,
        ("state", "secret", "last rotated", "period", "next due", "why"),
        rows,
        whole=("state", "secret"),
    )


@rotation_app.command("due")
@handle_errors
def due(
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only overdue secrets and those to rotate now.")
    ] = False,
    project: ReportProjectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the secrets you may read that are due for rotation (within the reminder window),
    overdue, or to rotate now (exposed by a scan, or flagged), most urgent first."""
    params: dict[str, Any] = {"overdue": "true" if overdue else "false"}
    if project:
        params["project"] = project
    with api() as client:
        data = client.get_json("/api/v1/rotation/due", **params)
    if as_json:
        print_json(data)
        return
    _print_schedule(data, "Overdue secrets" if overdue else "Secrets due for rotation")


@rotation_app.command("schedule")
@handle_errors
def schedule(project: ReportProjectOpt = None, as_json: JsonOpt = False) -> None:
    """List every secret you may read with its last rotation, rotation period (from the
    secret or its environment's policy), next due date and state."""
    params = {"project": project} if project else {}
    with api() as client:
        data = client.get_json("/api/v1/rotation/schedule", **params)
    if as_json:
        print_json(data)
        return
    _print_schedule(data, f"Rotation schedule (reminders {data['reminder_days']} days ahead)")


@rotation_app.command("flag")
@handle_errors
def flag(
    key: KeyArg,
    project: ProjectOpt,
    environment: EnvOpt,
    note: Annotated[str, typer.Option("--note", help="Why it must be rotated now.")],
    as_json: JsonOpt = False,
) -> None:
    """Flag a secret for rotation now (admins); writing a new version resolves it."""
    body = {"project": project, "environment": environment, "key": key, "note": note}
    with api() as client:
        data = client.send_json("POST", "/api/v1/rotation/flags", body)
    emit(
        data,
        as_json,
        f"Flagged {project}/{environment}/{key} (version {data['version']}) for rotation now.",
    )


@rotation_app.command("notify")
@handle_errors
def notify(as_json: JsonOpt = False) -> None:
    """Send the rotation reminders of your organization that are not sent yet (admins):
    rotation.due and rotation.overdue events, delivered to webhooks subscribed to them."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/rotation/notify", None)
    lines = [f"Sent {data['due']} rotation.due and {data['overdue']} rotation.overdue."]
    lines.extend(
        f"  {n['event']}: {n['project']}/{n['environment']}/{n['key']} v{n['version']}"
        for n in data["notices"]
    )
    emit(data, as_json, "\n".join(lines))


@rotation_app.command("rotate")
@handle_errors
def rotate(key: KeyArg, project: ProjectOpt, environment: EnvOpt, as_json: JsonOpt = False) -> None:
    """Run the secret's rotator now: the credential changes at its source and the new value
    is stored as a new version (never printed)."""
    with api() as client:
        data = client.send_json(
            "POST", f"/api/v1/rotation/rotate/{secret_path(project, environment, key)}", None
        )
    emit(
        data,
        as_json,
        f"Rotated {project}/{environment}/{key} with the {data['kind']} rotator: "
        f"version {data['version']}.",
    )


def _rotator_text(data: dict[str, Any]) -> str:
    where = f"{data['project']}/{data['environment']}/{data['key']}"
    params = ", ".join(f"{name} {value}" for name, value in data["config"].items())
    last = (
        f"last run {short_time(data['last_run_at'])}: {data['last_status']}"
        + (f" ({data['last_error']})" if data["last_error"] else "")
        if data["last_run_at"]
        else "never run"
    )
    return f"{where}: {data['kind']} rotator ({params}); {last}"


@rotator_app.command("set")
@handle_errors
def set_rotator(
    key: KeyArg,
    project: ProjectOpt,
    environment: EnvOpt,
    kind: Annotated[str, typer.Option("--kind", help="random or postgresql.")],
    length: Annotated[
        int | None, typer.Option("--length", help="Characters of new values (16-256).")
    ] = None,
    alphabet: Annotated[
        str | None,
        typer.Option("--alphabet", help="random: alnum (default), hex, base64url or ascii."),
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", help="postgresql: the role whose password rotates.")
    ] = None,
    connection: Annotated[
        str | None,
        typer.Option(
            "--connection",
            help="postgresql: project/env/KEY of the vault secret holding the admin URL.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Configure how a secret is rotated at its source (admins)."""
    body = {
        name: value
        for name, value in (
            ("kind", kind),
            ("length", length),
            ("alphabet", alphabet),
            ("role", role),
            ("connection", connection),
        )
        if value is not None
    }
    path = f"/api/v1/rotation/rotators/{secret_path(project, environment, key)}"
    with api() as client:
        data = client.send_json("PUT", path, body)
    emit(data, as_json, _rotator_text(data))


@rotator_app.command("show")
@handle_errors
def show_rotator(
    key: KeyArg, project: ProjectOpt, environment: EnvOpt, as_json: JsonOpt = False
) -> None:
    """Show a secret's rotator and how its last run went."""
    path = f"/api/v1/rotation/rotators/{secret_path(project, environment, key)}"
    with api() as client:
        data = client.get_json(path)
    emit(data, as_json, _rotator_text(data))


@rotator_app.command("remove")
@handle_errors
def remove_rotator(
    key: KeyArg,
    project: ProjectOpt,
    environment: EnvOpt,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Remove a secret's rotator (admins); the secret and its versions stay."""
    where = f"{project}/{environment}/{key}"
    if not yes and not typer.confirm(f"Remove the rotator of {where}?"):
        raise typer.Exit(1)
    path = f"/api/v1/rotation/rotators/{secret_path(project, environment, key)}"
    with api() as client:
        data = client.request("DELETE", path).json()
    emit(data, as_json, f"Removed the {data['kind']} rotator of {where}.")
