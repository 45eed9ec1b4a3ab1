"""``coffer demo``: a local demo vault with months of history, for the compliance reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coffer.cli.common import handle_errors

demo_app = typer.Typer(help="A demo organization to try coffer's compliance reports on.")


@demo_app.command("seed")
@handle_errors
def seed(
    directory: Annotated[
        Path, typer.Option("--dir", help="A new vault directory for the demo.")
    ] = Path(".coffer-demo"),
    months: Annotated[
        int, typer.Option("--months", min=1, max=12, help="Months of history to make.")
    ] = 4,
) -> None:
    """Create a new vault in --dir for organization acme and play months of history into it
    (people, inventoried secrets rotated on schedule, a leak, access requests, an approved
    export, a key rotation, a signed-off review, an offboarding). Then start it with
    `coffer server --dir DIR` and try `coffer compliance evidence`."""
    from coffer.cli.demo_history import seed_demo

    typer.echo(f"Playing {months} months of history into {directory} ...")
    result = seed_demo(directory, months=months)
    for event in result.events:
        typer.echo(f"  {event}")
    typer.echo(
        f"\nDone. Start the server, and from another terminal log in as {result.owner_email}\n"
        "with her API key (shown once):\n\n"
        f"    coffer server --dir {directory}\n"
        f"    coffer login --token {result.owner_key}\n\n"
        "then:  coffer compliance status\n"
        "       coffer compliance evidence --from YYYY-MM-DD --to YYYY-MM-DD --out evidence/\n"
    )
