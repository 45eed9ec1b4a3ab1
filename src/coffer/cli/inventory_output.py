"""Showing the inventory (``GET /api/v1/inventory`` entries): a table, or CSV that is safe
to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import Any

from coffer.cli.csv_cells import cell
from coffer.cli.output import print_table

# The CSV columns, in order.
CSV_COLUMNS = (
    "project",
    "environment",
    "key",
    "owner",
    "system",
    "description",
    "sensitivity",
    "rotation_days",
    "current_version",
    "last_rotated",
    "violations",
)


def inventory_csv(entries: list[dict[str, Any]]) -> str:
    """The inventory as RFC 4180 CSV (CRLF line ends, a header row), spreadsheet-safe."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow([cell(entry[column]) for column in CSV_COLUMNS])
    return buffer.getvalue()


def rotation_text(days: int | None) -> str:
    """A rotation period as ``90 d`` ("" for none)."""
    return "" if days is None else f"{days} d"


def print_inventory(entries: list[dict[str, Any]], title: str) -> None:
    """Prints inventory entries (API JSON) as a table: the secret, its metadata, rotation
    period, the day it was last rotated and the policy rules it breaks."""
    rows = [
        (
            f"{e['project']}/{e['environment']}/{e['key']}",
            e["owner"],
            e["system"],
            e["sensitivity"],
            rotation_text(e["rotation_days"]),
            (e["last_rotated"] or "")[:10],
            "; ".join(e["violations"]),
        )
        for e in entries
    ]
    print_table(
        title,
        ("secret", "owner", "system", "sensitivity", "rotation", "rotated", "breaks"),
        rows,
        whole=("secret",),
    )
