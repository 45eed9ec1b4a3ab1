"""CSV cells that are safe to open in a spreadsheet, shared by every CSV the CLI writes
(the inventory, the evidence pack's tables).

A cell a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return: OWASP "CSV injection") is written with a leading apostrophe, so a key
name or a reason someone typed cannot become a formula in an auditor's spreadsheet."""

from __future__ import annotations

import json
from typing import Any

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def plain(value: Any) -> str:
    """A value as text: lists joined by "; ", objects as JSON, booleans yes/no, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return "; ".join(plain(item) for item in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def cell(value: Any) -> str:
    """One CSV cell: ``plain`` text, with a formula's first character defused."""
    text = plain(value)
    return "'" + text if text.startswith(_FORMULA_START) else text
