"""``coffer policy``: environment policies (the inventory fields secrets there must have,
their longest rotation period, read reasons, export approvals), the secrets that break
them, and the organization's compliance settings."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.inventory_output import print_inventory, rotation_text
from coffer.cli.output import emit, print_json, print_table

policy_app = typer.Typer(
    help="Environment policies: required inventory fields, rotation limits, read reasons.",
    no_args_is_help=True,
)

EnvArg = Annotated[str, typer.Argument(help="Environment name (every project's), e.g. production.")]


def _policy_text(policy: dict[str, Any]) -> str:
    parts = []
    if policy["required_fields"]:
        parts.append("requires " + ", ".join(policy["required_fields"]))
    if policy["max_rotation_days"] is not None:
        parts.append(f"rotation at most every {policy['max_rotation_days']} days")
    if policy["require_read_reason"]:
        parts.append("reads must state a reason")
    if policy["export_approvals"] > 1:
        parts.append(f"exports need {policy['export_approvals']} approvals")
    return "; ".join(parts) or "no rules"


@policy_app.command("set")
@handle_errors
def set_policy(
    environment: EnvArg,
    require: Annotated[
        list[str] | None,
        typer.Option("--require", help="Required fields, comma-separated: owner,rotation_days."),
    ] = None,
    max_rotation: Annotated[
        str | None, typer.Option("--max-rotation", help="Longest rotation period: 90d.")
    ] = None,
    require_reason: Annotated[
        bool, typer.Option("--require-reason", help="Reads there must state a reason.")
    ] = False,
    export_approvals: Annotated[
        int, typer.Option("--export-approvals", help="1, or 2 for a second approver.")
    ] = 1,
    allow_existing_violations: Annotated[
        bool,
        typer.Option(
            "--allow-existing-violations", help="Save it even if existing secrets break it."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create or replace the policy for every environment of this name, in every project
    (admins). Refused, listing them, when existing secrets already break it, unless
    --allow-existing-violations."""
    fields = [name.strip() for item in require or [] for name in item.split(",") if name.strip()]
    body = {
        "required_fields": fields,
        "max_rotation_days": max_rotation,
        "require_read_reason": require_reason,
        "export_approvals": export_approvals,
        "allow_existing_violations": allow_existing_violations,
    }
    with api() as client:
        data = client.send_json("PUT", f"/api/v1/policies/{path_part(environment)}", body)
    if as_json:
        print_json(data)
        return
    sys.stdout.write(f"Saved the {environment} policy: {_policy_text(data['policy'])}\n")
    broken = data["existing_violations"]
    if broken:
        count = (
            "1 existing secret breaks"
            if len(broken) == 1
            else f"{len(broken)} existing secrets break"
        )
        print_inventory(broken, f"{count} it")


@policy_app.command("list")
@handle_errors
def list_policies(as_json: JsonOpt = False) -> None:
    """List the organization's environment policies."""
    with api() as client:
        data = client.get_json("/api/v1/policies")
    if as_json:
        print_json(data)
        return
    rows = [
        (
            p["environment"],
            ", ".join(p["required_fields"]),
            rotation_text(p["max_rotation_days"]),
            "yes" if p["require_read_reason"] else "no",
            p["export_approvals"],
        )
        for p in data["policies"]
    ]
    print_table(
        "Policies",
        ("environment", "required", "max rotation", "read reason", "export approvals"),
        rows,
    )


@policy_app.command("delete")
@handle_errors
def delete_policy(environment: EnvArg, as_json: JsonOpt = False) -> None:
    """Remove the policy for environments of this name (admins)."""
    with api() as client:
        data = client.request("DELETE", f"/api/v1/policies/{path_part(environment)}").json()
    emit(data, as_json, f"Deleted the {environment} policy")


@policy_app.command("check")
@handle_errors
def check(as_json: JsonOpt = False) -> None:
    """List every secret you may read that breaks its environment's policy; exit 1 when
    there is any."""
    with api() as client:
        data = client.get_json("/api/v1/policies/violations")
    broken = data["secrets"]
    if as_json:
        print_json(data)
    elif broken:
        print_inventory(broken, "Secrets breaking their environment's policy")
    else:
        sys.stdout.write("Every secret complies with its environment's policy\n")
    if broken:
        raise typer.Exit(1)


@policy_app.command("settings")
@handle_errors
def settings(
    root_rotation_approvals: Annotated[
        int | None,
        typer.Option("--root-rotation-approvals", help="1, or 2 for a second approver."),
    ] = None,
    reminder_days: Annotated[
        int | None,
        typer.Option("--reminder-days", help="Days before due date a rotation is due (0-90)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the compliance settings, or change those given (admins; lowering root key
    approvals from 2 to 1 takes the owner)."""
    body = {
        name: value
        for name, value in (
            ("root_rotation_approvals", root_rotation_approvals),
            ("rotation_reminder_days", reminder_days),
        )
        if value is not None
    }
    with api() as client:
        if body:
            data = client.send_json("PUT", "/api/v1/compliance-settings", body)
        else:
            data = client.get_json("/api/v1/compliance-settings")
    emit(
        data,
        as_json,
        f"root key rotation approvals: {data['root_rotation_approvals']}\n"
        f"rotation reminder days:      {data['rotation_reminder_days']}",
    )
