"""``coffer login``: check a token against the server and remember it."""

from __future__ import annotations

from typing import Annotated

import typer

from coffer.cli.common import JsonOpt, handle_errors
from coffer.cli.output import emit


@handle_errors
def login(
    token: Annotated[
        str, typer.Option("--token", help="An API token.", prompt=True, hide_input=True)
    ],
    addr: Annotated[str | None, typer.Option("--addr", help="Server address.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify TOKEN with the server and save it (with the address) to the CLI config file."""
    from coffer.cli.client import ApiClient
    from coffer.cli.settings_file import (
        ClientSettings,
        load_client_settings,
        save_client_settings,
    )

    settings = ClientSettings(addr=(addr or load_client_settings().addr).rstrip("/"), token=token)
    with ApiClient(settings) as client:
        who = client.get_json("/api/v1/whoami")
    path = save_client_settings(settings)
    emit(
        {"addr": settings.addr, "identity": who, "config": str(path)},
        as_json,
        f"Logged in to {settings.addr} as {who['name']} ({who['kind']}); saved to {path}",
    )
