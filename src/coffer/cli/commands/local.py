"""Commands that act on a vault on this machine: ``init`` and ``server``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from coffer.cli.common import JsonOpt, handle_errors
from coffer.cli.output import print_json
from coffer.cli.passwords import PasswordStdinOpt

if TYPE_CHECKING:
    from coffer.config import Settings

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="Vault directory (default: COFFER_DIR or ./.coffer)."),
]


def ensure_port_free(host: str, port: int) -> None:
    """Raises ConfigError naming the address when nothing can listen on it (checked before
    the vault is touched, so a busy port changes nothing)."""
    import socket

    from coffer.domain.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); "
                "choose another with --port or COFFER_PORT"
            ) from None


def _token_banner(token: str, addr: str, *, break_glass: bool = False) -> str:
    banner = f"\nBootstrap owner token (shown once, stored only as a hash):\n\n    {token}\n\n"
    if break_glass:
        return banner + (
            "Keep it offline as a break-glass credential, or revoke it once logged in\n"
            "(`coffer tokens list --all`, then `coffer tokens revoke ID`).\n"
        )
    return (
        banner
        + f"Use it from another terminal:\n\n    coffer login --addr {addr} --token {token}\n"
    )


def _split_of(shares: int | None, threshold: int | None) -> tuple[int, int] | None:
    """(shares, threshold) when both are given; raises InvalidInput naming the missing one."""
    from coffer.crypto.providers.shamir import validate_split
    from coffer.domain.errors import InvalidInput

    if shares is None and threshold is None:
        return None
    if shares is None or threshold is None:
        missing = "shares" if shares is None else "threshold"
        raise InvalidInput(f"--shares and --threshold go together; give --{missing}", field=missing)
    validate_split(shares, threshold)
    return shares, threshold


def _shares_banner(shares: tuple[str, ...], threshold: int) -> str:
    listed = "".join(f"\n  {number}. {share}\n" for number, share in enumerate(shares, 1))
    return (
        f"\nRoot key shares (shown once, stored nowhere; any {threshold} unseal the vault):\n"
        f"{listed}\nGive each to a different person. Start the server, then run "
        "`coffer unseal` once per share.\n"
    )


def _owner_banner(email: str, addr: str) -> str:
    return (
        f"\nOwner account: {email}. Log in from another terminal, once the server runs:\n\n"
        f"    coffer login --addr {addr} --email {email}\n"
    )


def _owner_credentials(settings: Settings, email: str, password_stdin: bool) -> tuple[str, str]:
    """Returns the normalised e-mail and a new password for the owner account, asking only
    once the address is valid and the vault does not exist yet."""
    from coffer.bootstrap import vault_exists
    from coffer.cli.passwords import read_new_password
    from coffer.domain.errors import Conflict
    from coffer.domain.identity import normalize_email

    address = normalize_email(email)
    if vault_exists(settings):
        raise Conflict("this vault is already initialised")
    return address, read_new_password(password_stdin, f"Password for {address}")


@handle_errors
def init(
    directory: DirOpt = None,
    org: Annotated[str, typer.Option("--org", help="First organization's name.")] = "default",
    email: Annotated[
        str | None,
        typer.Option("--email", help="Also create the owner's account with this e-mail."),
    ] = None,
    password_stdin: PasswordStdinOpt = False,
    shares: Annotated[
        int | None,
        typer.Option("--shares", help="Split a new root key into this many Shamir shares (2-16)."),
    ] = None,
    threshold: Annotated[
        int | None,
        typer.Option("--threshold", help="Shares needed to unseal (with --shares)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a new vault: root key (COFFER_ROOT_PROVIDER: a 0600 key file, an HSM or AWS
    KMS), database, organization, owner token.

    With --email the owner's account is created too (password from a prompt or stdin).
    With --shares N --threshold T the root key is split into N Shamir shares, shown once and
    never stored; the server then starts sealed until `coffer unseal` gets T of them."""
    from coffer.api.server import server_address
    from coffer.bootstrap import initialise_vault
    from coffer.config import Settings

    settings = Settings.from_env(directory=directory)
    split = _split_of(shares, threshold)
    owner = None if email is None else _owner_credentials(settings, email, password_stdin)
    result = initialise_vault(
        settings,
        org,
        owner_email=owner[0] if owner else None,
        owner_password=owner[1] if owner else None,
        split=split,
    )
    addr = server_address(settings)
    if as_json:
        print_json(
            {
                "directory": str(settings.directory),
                "organization": result.organization.name,
                "owner": owner[0] if owner else None,
                "token": result.token,
                "addr": addr,
                "shares": list(result.shares),
            }
        )
        return
    sys.stdout.write(
        f"Initialised a coffer vault in {settings.directory} "
        f"(organization {result.organization.name})\n"
    )
    if result.shares:
        sys.stdout.write(_shares_banner(result.shares, split[1] if split else 0))
    if owner:
        sys.stdout.write(_owner_banner(owner[0], addr))
    sys.stdout.write(_token_banner(result.token, addr, break_glass=owner is not None))


@handle_errors
def server(
    directory: DirOpt = None,
    host: Annotated[str | None, typer.Option("--host", help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Listen port.")] = None,
    init_missing: Annotated[
        bool, typer.Option("--init/--no-init", help="Initialise the vault if there is none.")
    ] = True,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate: serve HTTPS.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert.")
    ] = None,
    migrate: Annotated[
        bool,
        typer.Option("--migrate", help="Apply pending schema migrations before serving."),
    ] = False,
) -> None:
    """Start the API server (initialising a new vault on first start).

    It refuses a database whose schema is older or newer than this coffer; `coffer migrate`,
    or --migrate here, brings it up to date."""
    from coffer.api.server import check_tls_files, serve, serve_sealed, server_address
    from coffer.bootstrap import build_services, initialise_vault, sealed_root, vault_exists
    from coffer.cli.commands.migrate import describe, migrate_vault
    from coffer.config import Settings
    from coffer.domain.errors import ConfigError

    settings = Settings.from_env(directory=directory)
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError("--tls-cert and --tls-key must be given together")
    settings = settings.with_overrides(
        host=host or settings.host,
        port=port if port is not None else settings.port,
        tls_cert=tls_cert or settings.tls_cert,
        tls_key=tls_key or settings.tls_key,
    )
    check_tls_files(settings)
    addr = server_address(settings)
    ensure_port_free(settings.host, settings.port)
    banner = ""
    if init_missing and not vault_exists(settings):
        result = initialise_vault(settings)
        banner = f"Initialised a new vault in {settings.directory}\n" + _token_banner(
            result.token, addr
        )
    elif migrate:
        banner = describe(migrate_vault(settings)) + "\n"
    sealed = sealed_root(settings)
    if sealed is not None:
        sys.stdout.write(f"{banner}\ncoffer listening on {addr}, SEALED: run `coffer unseal`\n")
        sys.stdout.flush()
        serve_sealed(settings, sealed[0], sealed[1])
        return
    services = build_services(settings)
    sys.stdout.write(f"{banner}\ncoffer listening on {addr}  (API docs: {addr}/docs)\n")
    sys.stdout.flush()
    try:
        serve(services, settings)
    finally:
        services.close()
