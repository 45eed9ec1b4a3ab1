"""``coffer compliance``: the SOC 2 control table computed from the server's live state, and
evidence packs for an auditor (see docs/compliance.md)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.exit_codes import FAILURE, VERIFY_FAILED
from coffer.cli.output import print_json, print_table

compliance_app = typer.Typer(help="SOC 2: control status and evidence packs.", no_args_is_help=True)

COMPLIANCE = "/api/v1/compliance"
EVIDENCE_TIMEOUT_S = 600.0


@compliance_app.callback()
def _compliance_app_group() -> None:
    """SOC 2: control status and evidence packs."""


def _control_rows(controls: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [(c["criterion"], c["id"], c["status"].upper(), c["reason"]) for c in controls]


def _summary_line(data: dict[str, Any]) -> str:
    summary = data["summary"]
    failing = ", ".join(summary["failing_ids"])
    tail = f"; failing: {failing}" if failing else ""
    return f"{summary['passing']} of {summary['controls']} controls pass{tail}"


@compliance_app.command("status")
@handle_errors
def status(as_json: JsonOpt = False) -> None:
    """Show the SOC 2 control table computed from the server's live state (admins).

    Exits 0 when every control passes and 1 when any fails (with --json too), so a CI job
    or a cron can alert on a broken control."""
    with api() as client:
        data = client.get_json(f"{COMPLIANCE}/status")
    if as_json:
        print_json(data)
    else:
        print_table(
            f"SOC 2 controls of {data['organization']} ({data['generated_at']})",
            ("criterion", "control", "status", "reason"),
            _control_rows(data["controls"]),
            whole=("criterion", "status"),
        )
        sys.stdout.write(_summary_line(data) + "\n")
    if not data["summary"]["all_pass"]:
        raise typer.Exit(FAILURE)


@compliance_app.command("evidence")
@handle_errors
def evidence(
    start: Annotated[
        str, typer.Option("--from", help="First day of the period: YYYY-MM-DD (or ISO 8601).")
    ],
    end: Annotated[str, typer.Option("--to", help="Last day of the period, included: YYYY-MM-DD.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the pack into.")],
    force: Annotated[
        bool, typer.Option("--force", help="Write into a folder that is not empty.")
    ] = False,
    pdf: Annotated[
        bool, typer.Option("--pdf", help="Also print report.pdf (needs Chromium).")
    ] = False,
) -> None:
    """Write an auditor-ready evidence pack for a period (at most 3 years, ending today at
    the latest) into --out: index.html, CSV and JSON files, the signed audit export verified
    offline, VERIFY.md and manifest.json (admins).

    Exits 0 when the pack is written and its audit export verifies, 9 when the export does
    not verify (the pack is written all the same, with the failure recorded), 2 for bad
    dates or a folder that is not empty (nothing written)."""
    from coffer.cli.client import ApiClient
    from coffer.cli.evidence.pack import check_output, write_pack
    from coffer.cli.settings_file import load_client_settings
    from coffer.domain.evidence import parse_period

    period = parse_period(start, end, now=time.time(), fields=("--from", "--to"))
    check_output(out, force=force)
    with ApiClient(load_client_settings(), timeout=EVIDENCE_TIMEOUT_S) as client:
        data = client.get_json(f"{COMPLIANCE}/evidence", **{"from": start, "to": end})
        public_key = client.request("GET", "/api/v1/audit/public-key", authenticated=False).json()
        chunks = client.stream(
            "/api/v1/audit/export", {"format": "jsonl", "since": max(0.0, period.start)}
        )
        result = write_pack(out, data, chunks, public_key, server=client.addr, with_pdf=pdf)
    sys.stdout.write(
        f"Wrote the evidence pack of {data['organization']} for {data['period']['from']} to "
        f"{data['period']['to']} into {out} ({len(result.files)} files)\n"
        f"controls: {_summary_line(data)}\n"
        f"audit export: {result.verify_lines[0]}\n"
        f"open {out / 'index.html'} in a browser; VERIFY.md says how to check the pack\n"
    )
    if result.pdf_problem:
        sys.stderr.write(result.pdf_problem + "\n")
    if not result.verified:
        raise typer.Exit(VERIFY_FAILED)
