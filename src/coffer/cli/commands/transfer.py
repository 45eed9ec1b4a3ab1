"""``coffer import``, ``export``, ``diff`` and ``promote``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from coffer.cli.client import path_part
from coffer.cli.commands.secrets import ReasonOpt, env_path, reason_params
from coffer.cli.common import EnvOpt, JsonOpt, ProjectOpt, api, handle_errors
from coffer.cli.output import emit, print_json
from coffer.domain.errors import InvalidInput

FromOpt = Annotated[str, typer.Option("--from", help="Source environment.")]
ToOpt = Annotated[str, typer.Option("--to", help="Target environment.")]
ApprovalOpt = Annotated[
    str | None,
    typer.Option(
        "--approval",
        help="An env.export approval id (`coffer approvals request env.export PROJECT/ENV`), "
        "where the environment's policy wants a second approver.",
        show_default=False,
    ),
]


def _read_params(reason: str | None, approval: str | None) -> dict[str, str]:
    """The query parameters stating why (``reason``) and with whose approval."""
    return {**reason_params(reason), **({} if approval is None else {"approval": approval})}


def _list_line(label: str, keys: list[str], width: int = 10) -> str:
    return f"  {label:<{width}} {', '.join(keys) if keys else '-'}"


@handle_errors
def import_file(
    file: Annotated[Path, typer.Argument(help=".env or JSON file; - reads stdin.")],
    project: ProjectOpt,
    env: EnvOpt,
    fmt: Annotated[
        str | None, typer.Option("--format", help="dotenv or json (default: guessed).")
    ] = None,
    comment: Annotated[str | None, typer.Option("--comment", "-c")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Import secrets from a .env or JSON file (all or nothing)."""
    from coffer.domain.formats import parse_secrets_file

    if str(file) == "-":
        text, name = sys.stdin.read(), None
    else:
        try:
            text, name = file.read_text(encoding="utf-8"), file.name
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {file}: {exc}", field="file") from None
    values = parse_secrets_file(text, filename=name, fmt=fmt)
    body = {"secrets": values, "comment": comment}
    with api() as client:
        data = client.send_json("POST", f"{env_path(project, env)}/import", body)
    summary = "\n".join(
        [
            f"Imported into {project}/{env}:",
            _list_line("created", data["created"]),
            _list_line("updated", data["updated"]),
            _list_line("unchanged", data["unchanged"]),
        ]
    )
    emit(data, as_json, summary)


@handle_errors
def export(
    project: ProjectOpt,
    env: EnvOpt,
    fmt: Annotated[str, typer.Option("--format", help="dotenv, json or yaml.")] = "dotenv",
    raw: Annotated[bool, typer.Option("--raw", help="Do not expand ${...} references.")] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file (mode 0600).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    reason: ReasonOpt = None,
    approval: ApprovalOpt = None,
) -> None:
    """Print every secret of an environment as dotenv, JSON or YAML. Where its policy says
    so, --reason (or COFFER_REASON) states why and --approval names a second person's
    approval (used once)."""
    import os

    if as_json:
        fmt = "json"
    if fmt not in ("dotenv", "json", "yaml"):
        raise InvalidInput("--format must be one of dotenv, json, yaml", field="format")
    with api() as client:
        response = client.request(
            "GET",
            f"{env_path(project, env)}/export",
            params={
                "format": fmt,
                "expand": "false" if raw else "true",
                **_read_params(reason, approval),
            },
        )
    if output is None:
        sys.stdout.write(response.text)
        return
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode above applies only to a file this call creates
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(response.text)


@handle_errors
def diff(project: ProjectOpt, from_env: FromOpt, to_env: ToOpt, as_json: JsonOpt = False) -> None:
    """Show keys only in one environment and keys whose values differ (never values)."""
    with api() as client:
        data = client.get_json(
            f"/api/v1/projects/{path_part(project)}/diff", **{"from": from_env, "to": to_env}
        )
    if as_json:
        print_json(data)
        return
    width = max(len(from_env), len(to_env), 4) + 8
    lines = [
        f"{project}: {from_env} -> {to_env}",
        _list_line(f"only in {from_env}", data["only_in_from"], width),
        _list_line(f"only in {to_env}", data["only_in_to"], width),
        _list_line("different", data["different"], width),
        _list_line("same", data["same"], width),
    ]
    sys.stdout.write("\n".join(lines) + "\n")


@handle_errors
def promote(
    project: ProjectOpt,
    from_env: FromOpt,
    to_env: ToOpt,
    keys: Annotated[str | None, typer.Option("--keys", help="Comma-separated keys.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace differing values.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report without writing.")] = False,
    reason: ReasonOpt = None,
    approval: ApprovalOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy secrets from one environment to another and report what changed. Copying out
    of an environment needs what exporting it needs (--reason, --approval)."""
    key_list = [k.strip() for k in keys.split(",") if k.strip()] if keys else None
    body = {
        "from": from_env,
        "to": to_env,
        "keys": key_list,
        "overwrite": overwrite,
        "dry_run": dry_run,
    }
    with api() as client:
        data = client.request(
            "POST",
            f"/api/v1/projects/{path_part(project)}/promote",
            json=body,
            params=_read_params(reason, approval) or None,
        ).json()
    title = f"{'Would promote' if dry_run else 'Promoted'} {project}: {from_env} -> {to_env}"
    summary = "\n".join(
        [
            title,
            _list_line("created", data["created"]),
            _list_line("updated", data["updated"]),
            _list_line("skipped", data["skipped"]),
        ]
    )
    emit(data, as_json, summary)
