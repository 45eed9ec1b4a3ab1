"""``coffer requests``: issue 9. Placeholder command group, filled in by issue 9's work."""

from __future__ import annotations

import typer

access_app = typer.Typer(
    help="Access requests: ask for time-bound access; approve or deny others'.",
    no_args_is_help=True,
)


@access_app.callback()
def _access_app_group() -> None:
    """Access requests: ask for time-bound access; approve or deny others'."""
