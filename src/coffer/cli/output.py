"""Printing results: JSON for ``--json``, Rich tables and plain lines otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def print_json(data: Any) -> None:
    """Writes ``data`` as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Prints a table (or "(none)" when empty)."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not rows:
        console.print(f"{title + ': ' if title else ''}(none)")
        return
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def print_error(message: str) -> None:
    """Writes an error line to stderr."""
    sys.stderr.write(f"error: {message}\n")


def emit(data: Any, as_json: bool, text: str) -> None:
    """Prints ``data`` as JSON when asked, else the human ``text``."""
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(text + "\n")
