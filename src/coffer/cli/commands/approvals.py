"""``coffer approvals``: issue 9. Placeholder command group, filled in by issue 9's work."""

from __future__ import annotations

import typer

approvals_app = typer.Typer(
    help="Second approvals for separated duties (environment export, root key rotation).",
    no_args_is_help=True,
)


@approvals_app.callback()
def _approvals_app_group() -> None:
    """Second approvals for separated duties (environment export, root key rotation)."""
