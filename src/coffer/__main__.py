"""``python -m coffer`` runs the CLI."""

from coffer.cli.entry import main

main()
