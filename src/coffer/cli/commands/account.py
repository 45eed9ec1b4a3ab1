"""Your own account: ``login``, ``logout``, ``whoami``, ``passwd`` and ``accept-invite``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from coffer.cli.common import AddrOpt, JsonOpt, anonymous_api, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time
from coffer.cli.passwords import (
    PasswordStdinOpt,
    ask_hidden,
    interactive,
    read_new_password,
    read_password,
    read_stdin_lines,
)
from coffer.domain.errors import InvalidInput, MfaRequired, Unauthenticated

if TYPE_CHECKING:
    from coffer.cli.client import ApiClient

EmailOpt = Annotated[str | None, typer.Option("--email", help="Your account's e-mail address.")]
TokenOpt = Annotated[
    str | None,
    typer.Option("--token", help="Log in with a token or API key instead (- reads it from stdin)."),
]
TotpOpt = Annotated[
    str | None,
    typer.Option("--totp", help="Current TOTP code, or a recovery code, for accounts with MFA."),
]
LoginExpiresOpt = Annotated[
    str | None,
    typer.Option("--expires", help="Token lifetime such as 12h or 30d (server default 90d)."),
]
TokenNameOpt = Annotated[
    str | None, typer.Option("--name", help="Name the token (shown by `coffer tokens list`).")
]


@handle_errors
def login(
    email: EmailOpt = None,
    token: TokenOpt = None,
    password_stdin: PasswordStdinOpt = False,
    totp: TotpOpt = None,
    expires: LoginExpiresOpt = None,
    name: TokenNameOpt = None,
    addr: AddrOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Log in with e-mail and password (or a --token) and save the token.

    The token and the address go to the CLI config file (mode 0600)."""
    if email is not None and token is not None:
        raise InvalidInput("give --email or --token, not both", field="email")
    if email is None and token is None:
        if not interactive():
            raise InvalidInput(
                "give --email EMAIL (with --password-stdin to read the password from stdin) "
                "or --token TOKEN",
                field="email",
            )
        email = typer.prompt("E-mail")
    with anonymous_api(addr) as client:
        if token is not None:
            _login_with_token(client.addr, token, as_json)
            return
        assert email is not None
        body: dict[str, Any] = {
            "email": email,
            "password": read_password(password_stdin),
            "totp": totp,
            "mode": "token",
            "name": name,
            "expires_in": expires,
        }
        data = _password_login(client, body, may_ask=totp is None and not password_stdin)
    _save_and_report(client.addr, data, as_json)


def _password_login(client: ApiClient, body: dict[str, Any], *, may_ask: bool) -> Any:
    """POSTs the login; when the account turns out to need an MFA code and there is a
    terminal, asks for one and tries once more."""
    try:
        return client.send_json("POST", "/api/v1/auth/login", body, authenticated=False)
    except MfaRequired:
        if not (may_ask and interactive()):
            raise
    body["totp"] = typer.prompt("MFA code (or a recovery code)").strip()
    return client.send_json("POST", "/api/v1/auth/login", body, authenticated=False)


def _save_and_report(addr: str, data: Any, as_json: bool) -> None:
    from coffer.cli.settings_file import ClientSettings, save_client_settings

    path = save_client_settings(ClientSettings(addr=addr, token=data["token"]))
    identity = data["identity"]
    emit(
        {
            "addr": addr,
            "identity": identity,
            "token_id": data["id"],
            "expires_at": data["expires_at"],
            "config": str(path),
        },
        as_json,
        f"Logged in to {addr} as {identity['email']} ({identity['role']}); "
        f"token {data['id']} expires {data['expires_at']}; saved to {path}",
    )


def _login_with_token(addr: str, token: str, as_json: bool) -> None:
    """Checks the token with the server at ``addr`` and saves both."""
    from dataclasses import replace

    from coffer.cli.client import ApiClient
    from coffer.cli.settings_file import load_client_settings, save_client_settings

    if token == "-":
        token = read_stdin_lines(1, field="token")[0].strip()
    settings = replace(load_client_settings(), addr=addr, token=token)
    with ApiClient(settings) as client:
        who = client.get_json("/api/v1/whoami")
    path = save_client_settings(settings)
    emit(
        {"addr": settings.addr, "identity": who, "config": str(path)},
        as_json,
        f"Logged in to {settings.addr} as {who['name']} ({who['kind']}); saved to {path}",
    )


@handle_errors
def logout(as_json: JsonOpt = False) -> None:
    """Revoke the token in use on the server and remove it from the CLI config file."""
    from coffer.cli.settings_file import forget_token, load_client_settings, saved_token

    settings = load_client_settings()
    if not settings.token:
        raise Unauthenticated("not logged in: there is no token to log out of")
    note = "revoked on the server"
    try:
        with api() as client:
            client.send_json("POST", "/api/v1/auth/logout", None)
    except Unauthenticated as exc:
        note = f"the server no longer accepted it ({exc.message})"
    path = forget_token() if saved_token() == settings.token else None
    where = f"; removed from {path}" if path else "; it came from COFFER_TOKEN: unset that"
    emit(
        {"logged_out": True, "detail": note, "config": str(path) if path else None},
        as_json,
        f"Logged out: token {note}{where}",
    )


@handle_errors
def whoami(as_json: JsonOpt = False) -> None:
    """Show who the current token belongs to, its role and grants."""
    with api() as client:
        who = client.get_json("/api/v1/whoami")
        addr = client.addr
    if as_json:
        print_json({"addr": addr, **who})
        return
    role = f", {who['role']}" if who["role"] else ""
    sys.stdout.write(f"{who['name']} ({who['kind']}{role}) at {addr}\n")
    sys.stdout.write(f"token: {who['token_kind']} {who['token_id']}\n")
    if who["mfa_enrolment_required"]:
        sys.stdout.write("Your organization requires MFA: run `coffer mfa setup` first.\n")
    if who["grants"]:
        rows = [
            (
                g["project"],
                g["environment"] or "(all)",
                g["access"],
                short_time(g["expires_at"], "never"),
            )
            for g in who["grants"]
        ]
        print_table("Grants", ("project", "environment", "access", "expires"), rows)


@handle_errors
def passwd(
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin",
            help="Read the current and the new password from stdin (two lines).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Change your password; your other sessions and CLI tokens are revoked (API keys stay)."""
    from coffer.domain.identity import validate_password

    if password_stdin:
        current, new = read_stdin_lines(2)
        validate_password(new, field="new_password")
    else:
        current = ask_hidden("Current password")
        new = read_new_password(False)
    body = {"current_password": current, "new_password": new}
    with api() as client:
        data = client.send_json("POST", "/api/v1/auth/password", body)
    emit(
        data,
        as_json,
        f"Password changed; {data['sessions_revoked']} other session(s) and CLI token(s) "
        "revoked. API keys keep working: see `coffer keys list`.",
    )


@handle_errors
def accept_invite(
    token: Annotated[str, typer.Argument(help="The invitation token you were sent.")],
    addr: AddrOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Join an organization: create your account from an invitation and choose a password."""
    with anonymous_api(addr) as client:
        password = read_new_password(password_stdin, "Choose a password")
        body = {"token": token.strip(), "password": password}
        data = client.send_json("POST", "/api/v1/invitations/accept", body, authenticated=False)
        server = client.addr
    emit(
        {"addr": server, **data},
        as_json,
        f"Welcome, {data['email']}: you joined as {data['role']}. Log in with:\n\n"
        f"    coffer login --addr {server} --email {data['email']}\n",
    )
