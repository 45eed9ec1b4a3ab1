"""Console entry point for ``coffer``."""

from __future__ import annotations


def main() -> None:
    """Runs the CLI."""
    from coffer.cli.app import app

    app()


if __name__ == "__main__":
    main()
