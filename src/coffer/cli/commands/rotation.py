"""``coffer rotation``: which secrets to rotate, and why."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import print_json, print_table, short_time

rotation_app = typer.Typer(help="Rotation reports.", no_args_is_help=True)

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
