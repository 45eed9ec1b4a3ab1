"""``coffer tokens`` (list and revoke sessions, CLI tokens, keys) and ``coffer keys`` (API
keys that act as you, at most five)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from coffer.cli.client import path_part
from coffer.cli.common import ExpiresOpt, JsonOpt, api, handle_errors
from coffer.cli.output import emit, print_json, print_table, short_time

tokens_app = typer.Typer(help="List and revoke tokens.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)

IdArg = Annotated[str, typer.Argument(help="The token's id (from the list).")]
KIND_NAMES = {
    "boot": "bootstrap token",
    "cli": "CLI token",
    "sess": "browser session",
    "key": "API key",
    "mach": "machine token",
}


def token_rows(tokens: list[dict[str, Any]], *, with_identity: bool) -> list[tuple[Any, ...]]:
    """Table rows of token metadata; ``*`` marks the token in use."""
    rows = []
    for t in tokens:
        identity = (f"{t['identity_kind']} {t['identity_id']}",) if with_identity else ()
        rows.append(
            (
                "*" if t["current"] else "",
                t["id"],
                t["kind"],
                t["name"],
                *identity,
                short_time(t["expires_at"], "never"),
                short_time(t["last_used_at"]),
            )
        )
    return rows


def _columns(with_identity: bool) -> tuple[str, ...]:
    identity = ("identity",) if with_identity else ()
    return ("", "id", "kind", "name", *identity, "expires", "last used")


def issued_banner(what: str, data: dict[str, Any], hint: str) -> str:
    """The text shown once for a new token: what it is, the token, what to do with it."""
    expires = f", expires {data['expires_at']}" if data["expires_at"] else ", never expires"
    return (
        f"Created {what} (id {data['id']}{expires}).\n"
        "The token is shown once and stored only as a hash:\n\n"
        f"    {data['token']}\n\n{hint}"
    )


@tokens_app.command("list")
@handle_errors
def list_tokens(
    everyone: Annotated[
        bool, typer.Option("--all", help="Every active token of the organization (admins).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List your active tokens (* marks the one in use), or with --all everyone's."""
    with api() as client:
        data = client.get_json("/api/v1/tokens", all="true" if everyone else "false")
    if as_json:
        print_json(data)
        return
    rows = token_rows(data["tokens"], with_identity=everyone)
    print_table("Tokens", _columns(everyone), rows, whole=("id",))


@tokens_app.command("revoke")
@handle_errors
def revoke_token(token_id: IdArg, as_json: JsonOpt = False) -> None:
    """Revoke a token: yours, or anyone's (machines' too) for admins. It stops working at once."""
    with api() as client:
        data = client.request("DELETE", f"/api/v1/tokens/{path_part(token_id)}").json()
    kind = KIND_NAMES.get(data["kind"], data["kind"])
    emit(data, as_json, f"Revoked {kind} {data['id']} ({data['name']})")


@keys_app.command("create")
@handle_errors
def create_key(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. deploy-laptop.")],
    expires: ExpiresOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key that acts as you (at most 5 active; no expiry unless --expires)."""
    with api() as client:
        data = client.send_json("POST", "/api/v1/keys", {"name": name, "expires_in": expires})
    hint = (
        "Use it as COFFER_TOKEN or as the header `Authorization: Bearer <key>`; it acts as you.\n"
        f"Revoke it with `coffer keys revoke {data['id']}`."
    )
    emit(data, as_json, issued_banner(f"API key {data['name']!r}", data, hint))


@keys_app.command("list")
@handle_errors
def list_keys(as_json: JsonOpt = False) -> None:
    """List your active API keys (never the keys themselves)."""
    with api() as client:
        data = client.get_json("/api/v1/keys")
    if as_json:
        print_json(data)
        return
    rows = token_rows(data["keys"], with_identity=False)
    print_table("API keys", _columns(False), rows, whole=("id",))


@keys_app.command("revoke")
@handle_errors
def revoke_key(key_id: IdArg, as_json: JsonOpt = False) -> None:
    """Revoke one of your API keys; it stops working at once."""
    with api() as client:
        data = client.request("DELETE", f"/api/v1/keys/{path_part(key_id)}").json()
    emit(data, as_json, f"Revoked API key {data['id']} ({data['name']})")
