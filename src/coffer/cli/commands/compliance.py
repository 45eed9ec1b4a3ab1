"""``coffer compliance``: issue 9. Placeholder command group, filled in by issue 9's work."""

from __future__ import annotations

import typer

compliance_app = typer.Typer(help="SOC 2: control status and evidence packs.", no_args_is_help=True)


@compliance_app.callback()
def _compliance_app_group() -> None:
    """SOC 2: control status and evidence packs."""
