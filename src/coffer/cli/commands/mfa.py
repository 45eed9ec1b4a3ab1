"""``coffer mfa``: enrol in TOTP, confirm with a code (recovery codes shown once), turn off."""

from __future__ import annotations

from typing import Annotated

import typer

from coffer.cli.common import JsonOpt, api, handle_errors
from coffer.cli.output import emit

mfa_app = typer.Typer(help="Two-factor authentication (TOTP) for your login.", no_args_is_help=True)

CodeArg = Annotated[str, typer.Argument(help="The 6-digit code your authenticator app shows.")]


@mfa_app.command("setup")
@handle_errors
def setup(as_json: JsonOpt = False) -> None:
    """Start enrolment: prints the TOTP secret and otpauth:// URI for your authenticator app."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/mfa/setup", None)
    emit(
        data,
        as_json,
        "Add this account to your authenticator app (shown once):\n\n"
        f"    secret: {data['secret']}\n"
        f"    URI:    {data['otpauth_uri']}\n\n"
        "Then confirm with the code it shows: `coffer mfa enable CODE`.",
    )


@mfa_app.command("enable")
@handle_errors
def enable(code: CodeArg, as_json: JsonOpt = False) -> None:
    """Confirm enrolment with a current code; prints one-time recovery codes (shown once)."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/mfa/enable", {"code": code.strip()})
    codes = "\n".join(f"    {c}" for c in data["recovery_codes"])
    emit(
        data,
        as_json,
        "MFA is on: `coffer login` now asks for a code (or pass --totp CODE).\n\n"
        "Recovery codes (shown once; each works once in place of a code; keep them offline):\n\n"
        f"{codes}",
    )


@mfa_app.command("disable")
@handle_errors
def disable(
    code: Annotated[str, typer.Argument(help="A current code, or one of your recovery codes.")],
    as_json: JsonOpt = False,
) -> None:
    """Turn MFA off (not allowed when your organization requires it)."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/mfa/disable", {"code": code.strip()})
    emit(data, as_json, "MFA is off")
