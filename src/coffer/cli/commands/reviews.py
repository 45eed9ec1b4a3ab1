"""``coffer reviews``: issue 9. Placeholder command group, filled in by issue 9's work."""

from __future__ import annotations

import typer

reviews_app = typer.Typer(
    help="Access reviews: list every identity's access, keep or revoke, sign off.",
    no_args_is_help=True,
)


@reviews_app.callback()
def _reviews_app_group() -> None:
    """Access reviews: list every identity's access, keep or revoke, sign off."""
