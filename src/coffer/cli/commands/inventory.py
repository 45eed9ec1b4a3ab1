"""``coffer inventory``: issue 9. Placeholder command group, filled in by issue 9's work."""

from __future__ import annotations

import typer

inventory_app = typer.Typer(
    help="Inventory: secrets' owners, systems, sensitivity and rotation periods.",
    no_args_is_help=True,
)


@inventory_app.callback()
def _inventory_app_group() -> None:
    """Inventory: secrets' owners, systems, sensitivity and rotation periods."""


policy_app = typer.Typer(
    help="Environment policies: required inventory fields, rotation limits, read reasons.",
    no_args_is_help=True,
)


@policy_app.callback()
def _policy_app_group() -> None:
    """Environment policies: required inventory fields, rotation limits, read reasons."""
