"""``coffer unseal``: give a sealed server one Shamir share of its root key."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from coffer.cli.common import AddrOpt, JsonOpt, anonymous_api, handle_errors
from coffer.cli.output import emit


@handle_errors
def unseal(
    share: Annotated[
        str | None,
        typer.Argument(help="One share ('-' reads it from stdin; default: a hidden prompt)."),
    ] = None,
    addr: AddrOpt = None,
    status: Annotated[
        bool, typer.Option("--status", help="Only show whether the server is sealed.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Give the server one share of its Shamir-split root key; run once per share until it
    opens. Shares are words; a mistyped one is refused and counts nothing."""
    with anonymous_api(addr) as client:
        if status:
            data = client.request("GET", "/api/v1/sys/seal-status", authenticated=False).json()
        else:
            if share is None:
                share = typer.prompt("Share", hide_input=True)
            elif share == "-":
                share = sys.stdin.read()
            data = client.send_json(
                "POST", "/api/v1/sys/unseal", {"share": share}, authenticated=False
            )
    if not data["sealed"]:
        text = "Unsealed: the vault is open."
    else:
        text = (
            f"Sealed: {data['progress']} of {data['threshold']} shares given; "
            "give another with `coffer unseal`."
        )
    emit(data, as_json, text)
