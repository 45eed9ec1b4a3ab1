"""The rules an evidence pack is built by: its period, who was a member with which role at
the period's end, the permission matrix, and week buckets for charts. Pure: no I/O.

* **Period**: ``from`` and ``to`` are dates (``YYYY-MM-DD``, whole UTC days: ``to`` includes
  its day) or ISO 8601 times (a time without an offset is UTC). ``from`` may not come after
  ``to``; ``to`` may not lie beyond today (UTC); the period may be at most three years long.
  Data is read up to ``min(end, now)``.
* **Members at the period's end**: who was a member then and with which role, from the
  current members, the people who left since, and the membership changes the log records.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from coffer.domain.access import Action, Restrictions, Role, decide
from coffer.domain.errors import InvalidInput

DAY = 86400.0
WEEK = 7 * DAY
MAX_PERIOD_DAYS = 3 * 365 + 1  # three years, one of them a leap year
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_SHOWN = 40


@dataclass(frozen=True)
class EvidencePeriod:
    """The period an evidence pack covers: ``start`` (inclusive) to ``end`` (exclusive),
    Unix seconds, and the text the caller gave for each bound (normalised)."""

    start: float
    end: float
    start_text: str
    end_text: str

    def data_end(self, now: float) -> float:
        """Where reads of recorded data stop: the period's end, or now when that is sooner."""
        return min(self.end, now)

    def contains(self, moment: float | None) -> bool:
        """True when ``moment`` lies in the period."""
        return moment is not None and self.start <= moment < self.end


def _parse_bound(text: object, *, field: str, end: bool, error: type[InvalidInput]) -> float:
    """Unix seconds of one bound; a date's bound is its first second (``end``: the first
    second of the next day)."""
    shown = repr(text[:_SHOWN]) if isinstance(text, str) else type(text).__name__
    rule = f"{field}: must be a date YYYY-MM-DD or an ISO 8601 time, got {shown}"
    if not isinstance(text, str) or not text.strip():
        raise error(rule, field=field.lstrip("-"))
    value = text.strip()
    try:
        if _DATE.fullmatch(value):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (moment + timedelta(days=1) if end else moment).timestamp()
        parsed = datetime.fromisoformat(value)
    except (ValueError, OverflowError):
        raise error(rule, field=field.lstrip("-")) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_period(
    start_text: object,
    end_text: object,
    *,
    now: float,
    fields: tuple[str, str] = ("from", "to"),
    error: type[InvalidInput] = InvalidInput,
) -> EvidencePeriod:
    """Returns the period from ``start_text`` to ``end_text``. Raises ``error`` naming the
    field (``fields``: the names the caller typed) when a bound does not parse, when ``from``
    comes after ``to``, when ``to`` lies beyond today (UTC), or when the period is longer
    than three years."""
    start_field, end_field = fields
    start = _parse_bound(start_text, field=start_field, end=False, error=error)
    end = _parse_bound(end_text, field=end_field, end=True, error=error)
    if start >= end:
        raise error(
            f"{start_field}: must be on or before {end_field}", field=start_field.lstrip("-")
        )
    today = datetime.fromtimestamp(now, tz=UTC).date()
    last_day = datetime.fromtimestamp(end - 1e-3, tz=UTC).date()
    if last_day > today:
        raise error(
            f"{end_field}: must not be later than today ({today.isoformat()} UTC)",
            field=end_field.lstrip("-"),
        )
    if end - start > MAX_PERIOD_DAYS * DAY:
        raise error(
            f"{start_field}: the period may be at most 3 years long ({MAX_PERIOD_DAYS} days)",
            field=start_field.lstrip("-"),
        )
    return EvidencePeriod(start, end, str(start_text).strip(), str(end_text).strip())


def day_text(moment: float) -> str:
    """``YYYY-MM-DD`` (UTC) of a Unix time."""
    return datetime.fromtimestamp(moment, tz=UTC).date().isoformat()


def iso_time(moment: float) -> str:
    """An RFC 3339 UTC time of a Unix time, to the second (``2026-01-31T18:00:00Z``)."""
    return (
        datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def maybe_iso(moment: float | None) -> str | None:
    """``iso_time`` of a time, None for None."""
    return None if moment is None else iso_time(moment)


@dataclass(frozen=True)
class MembershipEvent:
    """A recorded change of who is a member with which role: ``joined`` (``role``),
    ``role_changed`` (``previous`` -> ``role``), ``owner_from`` (an owner became admin by a
    transfer), ``owner_to`` (became owner), ``left`` (removed or offboarded)."""

    at: float
    kind: str
    email: str
    role: str | None = None
    previous: str | None = None


@dataclass(frozen=True)
class CurrentMember:
    """A person who is a member now."""

    id: str
    email: str
    role: str
    created_at: float
    mfa_enabled: bool


@dataclass(frozen=True)
class PastMember:
    """A person who has left (``left_at``, ``how``), with the role they had when they left
    when it was recorded."""

    id: str | None
    email: str
    left_at: float
    how: str
    role: str | None = None


@dataclass(frozen=True)
class MemberAtEnd:
    """A person who was a member at the period's end, with their role then (None when the
    log no longer says), and what became of them."""

    id: str | None
    email: str
    role: str | None
    joined_at: float | None
    status: str
    mfa_enabled: bool | None


_CHANGES = ("role_changed", "owner_from", "owner_to")


def _role_after(event: MembershipEvent) -> str | None:
    if event.kind in ("joined", "role_changed"):
        return event.role
    return {"owner_to": "owner", "owner_from": "admin"}.get(event.kind)


def _role_before(event: MembershipEvent) -> str | None:
    if event.kind == "role_changed":
        return event.previous
    return "owner" if event.kind == "owner_from" else None


def members_at(
    end: float,
    current: Iterable[CurrentMember],
    departed: Iterable[PastMember],
    events: Sequence[MembershipEvent],
) -> list[MemberAtEnd]:
    """Returns who was a member at ``end`` with their role then, by e-mail: current members
    who joined by then, and people who left after it (``departed``). A role is the one the
    latest recorded change at or before ``end`` gave; when the log holds none (pruned), the
    role before the first change after ``end``; else the current role."""
    before: dict[str, str] = {}
    after_first: dict[str, str | None] = {}
    for event in sorted(events, key=lambda e: e.at):
        if event.at <= end:
            role = _role_after(event)
            if role is not None:
                before[event.email] = role
        elif event.email not in after_first and event.kind in _CHANGES:
            after_first[event.email] = _role_before(event)

    def role_of(email: str, now_role: str | None) -> str | None:
        if email in before:
            return before[email]
        if email in after_first:
            return after_first[email]
        return now_role

    people: dict[str, MemberAtEnd] = {}
    for member in current:
        if member.created_at <= end:
            people[member.email] = MemberAtEnd(
                member.id,
                member.email,
                role_of(member.email, member.role),
                member.created_at,
                "member",
                member.mfa_enabled,
            )
    for past in sorted(departed, key=lambda p: p.left_at):
        if past.left_at > end and past.email not in people:
            people[past.email] = MemberAtEnd(
                past.id,
                past.email,
                role_of(past.email, past.role),
                None,
                f"{past.how} {day_text(past.left_at)}",
                None,
            )
    return [people[email] for email in sorted(people)]


def week_index(moment: float, start: float) -> int:
    """The number of the 7-day bucket (from ``start``) that ``moment`` falls in."""
    return int((moment - start) // WEEK)


def week_starts(start: float, end: float) -> list[float]:
    """The first second of every 7-day bucket from ``start`` up to ``end``."""
    count = max(1, week_index(end - 1e-3, start) + 1) if end > start else 1
    return [start + index * WEEK for index in range(count)]


def area_of(action: str) -> str:
    """The area of an event name (``secret`` of ``secret.read``)."""
    return action.split(".", 1)[0]


def by_area_and_week(counts: Iterable[tuple[int, str, int]], weeks: int) -> dict[str, list[int]]:
    """Turns ``(week, action, count)`` rows into a count per week for each area."""
    areas: dict[str, list[int]] = {}
    for week, action, count in counts:
        if 0 <= week < weeks:
            areas.setdefault(area_of(action), [0] * weeks)[week] += count
    return dict(sorted(areas.items()))


def count_by(values: Iterable[str], order: Sequence[str]) -> dict[str, int]:
    """How many of ``values`` are each of ``order`` (zero included), then any others."""
    counts: dict[str, int] = dict.fromkeys(order, 0)
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def first_items(items: Sequence[str], shown: int = 10) -> str:
    """``items`` joined by "; ", the first ``shown`` of them and how many more."""
    text = "; ".join(items[:shown])
    more = len(items) - shown
    return f"{text}; and {more} more" if more > 0 else text


# The identities of the permission matrix: each role as a person, and a machine identity.
MATRIX_COLUMNS = ("viewer", "admin", "owner", "machine")


def permission_matrix() -> list[dict[str, str]]:
    """The role and permission matrix as the policy (``domain.access.decide``) answers it:
    for every action, whether each role (and a machine identity, which has no role) may
    take it with no grant. Grants then narrow or extend secret access per project or
    environment; an owner's is never narrowed."""
    rows = []
    for action in Action:
        row = {"action": action.value}
        for column in MATRIX_COLUMNS:
            machine = column == "machine"
            decision = decide(
                None if machine else Role(column),
                (),
                Restrictions(),
                action,
                is_person=not machine,
                is_machine=machine,
                project="project",
                environment="environment",
                now=0.0,
            )
            row[column] = "allowed" if decision.allowed else "denied"
        rows.append(row)
    return rows


def human_duration(seconds: float) -> str:
    """``90 days``, ``12 hours``, ``30 minutes`` or ``45 seconds``: the largest whole unit."""
    for unit, size in (("day", DAY), ("hour", 3600.0), ("minute", 60.0)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'' if count == 1 else 's'}"
    count = int(seconds)
    return f"{count} second{'' if count == 1 else 's'}"
