"""Console entry point for ``coffer``."""

from __future__ import annotations

import sys


def main() -> None:
    """Runs the CLI.

    ``coffer scan`` runs as a pre-commit hook on every commit, so it starts without importing
    the HTTP client and the server commands (about 0.2 s): a one-command app of the same
    name serves it, with the same options, help and exit codes.
    """
    if sys.argv[1:2] == ["scan"]:
        import typer

        from coffer.cli.commands.scan import scan

        scan_app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        scan_app.command("scan")(scan)
        scan_app.callback()(_no_options)
        scan_app(prog_name="coffer")
        return
    from coffer.cli.app import app

    app()


def _no_options() -> None:
    """coffer: a self-hosted secrets manager with a verifiable audit trail."""


if __name__ == "__main__":
    main()
