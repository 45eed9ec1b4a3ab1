"""Printing results: JSON for ``--json``, Rich tables and plain lines otherwise."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def print_json(data: Any) -> None:
    """Writes ``data`` as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def print_table(
    title: str | None,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    whole: Sequence[str] = (),
) -> None:
    """Prints a table (or "(none)" when empty). Cells of the ``whole`` columns (ids that
    people copy) are never wrapped or cut short, however narrow the terminal."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    if not rows:
        console.print(f"{title + ': ' if title else ''}(none)")
        return
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        if column in whole:
            widest = max(len(str(row[index] or "")) for row in rows)
            table.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            table.add_column(column)
    for row in rows:
        # Text, not markup: a name such as "[/x]" is shown as typed, never interpreted.
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    console.print(table)


def short_time(iso_time: str | None, empty: str = "") -> str:
    """``2026-01-31T18:00:00.000Z`` as ``2026-01-31 18:00Z`` for tables (``empty`` for None)."""
    if not iso_time:
        return empty
    return f"{iso_time[:10]} {iso_time[11:16]}Z"


def print_error(message: str) -> None:
    """Writes an error line to stderr."""
    sys.stderr.write(f"error: {message}\n")


def emit(data: Any, as_json: bool, text: str) -> None:
    """Prints ``data`` as JSON when asked, else the human ``text``."""
    if as_json:
        print_json(data)
    else:
        sys.stdout.write(text + "\n")
