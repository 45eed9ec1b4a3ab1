"""An organization's working hours, such as ``Mon-Fri 09:00-18:00 Europe/Paris``.

The text is ``DAYS START-END [ZONE]``:

- ``DAYS``: day names (``Mon`` .. ``Sun``, or in full, any case) and ranges of them joined by
  commas: ``Mon-Fri``, ``Mon,Wed,Fri``, ``Sat-Sun``; a range may wrap (``Fri-Mon``).
- ``START-END``: 24-hour ``HH:MM`` times; ``END`` may be ``24:00``. When ``END`` comes
  before ``START`` the window runs past midnight into the next day (``22:00-06:00``) and
  belongs to the day it starts on.
- ``ZONE``: ``UTC`` (the default) or an IANA time-zone name such as ``Europe/Paris``; local
  times follow that zone's daylight-saving rules.

Reads outside these hours are flagged as anomalies (``coffer.services.anomalies``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from coffer.domain.errors import InvalidInput

FIELD = "working_hours"
MAX_TEXT = 64
_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"([01]\d|2[0-4]):([0-5]\d)")
_MINUTES_PER_DAY = 24 * 60
_EXAMPLE = "such as Mon-Fri 09:00-18:00 UTC or Mon-Fri 08:30-17:30 Europe/Paris"


@dataclass(frozen=True)
class WorkingHours:
    """Parsed working hours: weekdays (0 is Monday), start and end in minutes after local
    midnight (``end`` before ``start`` means the window runs past midnight), and the zone."""

    days: frozenset[int]
    start: int
    end: int
    zone: str

    def contains(self, timestamp: float) -> bool:
        """True when the Unix time ``timestamp`` falls inside the working hours."""
        local = datetime.fromtimestamp(timestamp, ZoneInfo(self.zone))
        minute = local.hour * 60 + local.minute
        weekday = local.weekday()
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        return (weekday in self.days and minute >= self.start) or (
            (weekday - 1) % 7 in self.days and minute < self.end
        )

    def local_time(self, timestamp: float) -> str:
        """Returns ``timestamp`` as ``Sat 03:12`` in the working hours' zone."""
        local = datetime.fromtimestamp(timestamp, ZoneInfo(self.zone))
        return f"{_DAY_NAMES[local.weekday()].title()} {local.hour:02d}:{local.minute:02d}"

    def __str__(self) -> str:
        return f"{_days_text(self.days)} {_clock(self.start)}-{_clock(self.end)} {self.zone}"


def parse_working_hours(text: str) -> WorkingHours:
    """Returns the working hours ``text`` describes (see the module docstring). Raises
    InvalidInput naming ``working_hours`` with the rule that was broken."""
    if not isinstance(text, str) or not text.strip():
        raise _invalid(f"give days, hours and a zone, {_EXAMPLE}")
    if len(text) > MAX_TEXT:
        raise _invalid(f"must be at most {MAX_TEXT} characters")
    parts = text.split()
    if len(parts) not in (2, 3):
        raise _invalid(f"must be DAYS START-END [ZONE], {_EXAMPLE}")
    days = _parse_days(parts[0])
    start, end = _parse_span(parts[1])
    zone = _parse_zone(parts[2] if len(parts) == 3 else "UTC")
    return WorkingHours(days, start, end, zone)


def _parse_days(text: str) -> frozenset[int]:
    days: set[int] = set()
    for item in text.split(","):
        first, dash, last = item.partition("-")
        start = _day(first)
        stop = _day(last) if dash else start
        day = start
        days.add(day)
        while day != stop:
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


def _day(text: str) -> int:
    name = text.strip().lower()
    if name in _DAY_NAMES:
        return _DAY_NAMES.index(name)
    if name in _FULL_NAMES:
        return _FULL_NAMES.index(name)
    raise _invalid(f"{text[:20]!r} is not a day; use Mon, Tue, Wed, Thu, Fri, Sat or Sun")


def _parse_span(text: str) -> tuple[int, int]:
    first, dash, last = text.partition("-")
    if not dash:
        raise _invalid(f"hours must be START-END in 24-hour HH:MM, {_EXAMPLE}")
    start, end = _minutes(first), _minutes(last)
    if start == _MINUTES_PER_DAY:
        raise _invalid("the start time must be before 24:00")
    if start == end:
        raise _invalid("the start and end times must differ")
    return start, end


def _minutes(text: str) -> int:
    match = _TIME.fullmatch(text)
    value = int(match.group(1)) * 60 + int(match.group(2)) if match else -1
    if not 0 <= value <= _MINUTES_PER_DAY:
        raise _invalid(f"{text[:20]!r} is not a 24-hour HH:MM time (00:00 to 24:00)")
    return value


def _parse_zone(text: str) -> str:
    if text.upper() in ("UTC", "Z"):
        return "UTC"
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise _invalid(
            f"{text[:40]!r} is not a time zone; use UTC or an IANA name such as Europe/Paris"
        ) from None
    return text


def _days_text(days: frozenset[int]) -> str:
    """Writes the days as comma-joined runs, Monday first (``Mon-Fri``, ``Mon,Wed``)."""
    runs: list[list[int]] = []
    for day in sorted(days):
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    names = [_DAY_NAMES[run[0]].title() for run in runs]
    return ",".join(
        name if len(run) == 1 else f"{name}-{_DAY_NAMES[run[-1]].title()}"
        for name, run in zip(names, runs, strict=True)
    )


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _invalid(rule: str) -> InvalidInput:
    return InvalidInput(f"{FIELD}: {rule}", field=FIELD)
