"""Durations as people type them: ``30s``, ``5m``, ``2h``, ``7d`` (and plain seconds)."""

from __future__ import annotations

import re

from coffer.domain.errors import InvalidInput

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]{1,9})\s*([smhd]?)")


def parse_duration(
    text: str | int, *, field: str, minimum: int = 1, maximum: int | None = None
) -> int:
    """Returns the number of seconds in ``text`` (``90d``, ``30m``, ``45``). Raises InvalidInput
    naming ``field`` when it is malformed or outside ``minimum``..``maximum`` seconds."""
    if isinstance(text, bool):
        raise InvalidInput(f"{field} must be a duration such as 30s, 5m, 2h or 7d", field=field)
    if isinstance(text, int):
        seconds = text
    else:
        match = _DURATION.fullmatch(text.strip().lower()) if isinstance(text, str) else None
        if match is None:
            raise InvalidInput(f"{field} must be a duration such as 30s, 5m, 2h or 7d", field=field)
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < minimum:
        unit = "second" if minimum == 1 else "seconds"
        raise InvalidInput(f"{field} must be at least {minimum} {unit}", field=field)
    if maximum is not None and seconds > maximum:
        raise InvalidInput(
            f"{field} must be at most {maximum // 86400} days ({maximum} seconds)", field=field
        )
    return seconds
