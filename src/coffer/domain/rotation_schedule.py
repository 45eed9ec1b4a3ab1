"""The rotation schedule of a secret: when it was last rotated, how often it must be rotated,
when it is next due, and whether it must be rotated now.

* **Last rotated** is when the secret's current version was written: writing any new version
  is a rotation.
* **Period**: the shorter of the secret's own ``rotation_days`` (its inventory) and the
  ``max_rotation_days`` of the organization's policy for environments of its name (either
  alone when only one is set; a tie counts as the secret's), else none (never due on
  schedule). ``period_source`` says which (``secret`` or ``policy``).
* **Next due** = last rotated + period.
* **State**, the first that applies:

  - ``rotate now``: the current version is exposed (a scan found it outside the vault), or
    flagged (``offboarding``: someone who could read it left; ``manual``) by a flag of the
    current version or a newer one;
  - ``overdue``: the next due time has passed (``now > next_due``);
  - ``due``: it is at most ``reminder_days`` away (``next_due - reminder_days <= now``,
    both ends included);
  - ``ok``.

An exposure or a flag of an older version is resolved: a new version was written since (the
records stay as history). The reminders (``rotation.due``/``rotation.overdue``) are sent once
per secret version and state: ``notice_for`` says which one an entry calls for.

Pure: no I/O; times are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from coffer.domain.errors import InvalidInput
from coffer.domain.exposures import CONTROL_CHARACTERS, SECONDS_PER_DAY, ExposureRecord


class RotationState(StrEnum):
    """What the schedule asks for a secret, most urgent first."""

    ROTATE_NOW = "rotate now"
    OVERDUE = "overdue"
    DUE = "due"
    OK = "ok"


_URGENCY = {state: rank for rank, state in enumerate(RotationState)}


class PeriodSource(StrEnum):
    """Where a secret's rotation period comes from."""

    SECRET = "secret"  # the secret's inventory (rotation_days)
    POLICY = "policy"  # its environment's policy (max_rotation_days)


@dataclass(frozen=True, slots=True)
class RotationFlag:
    """A request to rotate version ``version`` of a secret now, because of ``reason``
    (``offboarding``, ``manual``), with a detail such as the offboarded member's e-mail
    address or an admin's note; ``flagged_by`` is the identity that flagged it (None for
    the system)."""

    version: int
    reason: str
    detail: str | None
    flagged_at: float
    flagged_by: str | None


@dataclass(frozen=True, slots=True)
class SecretRotationFacts:
    """What the schedule of one current secret is computed from: its current version and
    when it was written, its own period (``rotation_days``), its environment policy's
    (``policy_days``), and every exposure and flag recorded for it (any version)."""

    secret_id: str
    project: str
    environment: str
    key: str
    version: int
    last_rotated: float
    rotation_days: int | None = None
    policy_days: int | None = None
    exposures: tuple[ExposureRecord, ...] = ()
    flags: tuple[RotationFlag, ...] = ()


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    """One secret's place in the schedule at ``computed_at``. ``by_schedule`` is the state
    its period alone gives (``ok``, ``due`` or ``overdue``); ``state`` is ``rotate now``
    instead while it has open exposures or flags (of the current version, or for flags a
    newer one), which ``exposures`` and ``flags`` hold."""

    secret_id: str
    project: str
    environment: str
    key: str
    version: int
    last_rotated: float
    period_days: int | None
    period_source: PeriodSource | None
    next_due: float | None
    state: RotationState
    by_schedule: RotationState
    exposures: tuple[ExposureRecord, ...]
    flags: tuple[RotationFlag, ...]
    computed_at: float

    @property
    def days_left(self) -> int | None:
        """Whole days until the next due time, negative once it has passed (``-3``: three
        days overdue); None without a period."""
        if self.next_due is None:
            return None
        seconds = self.next_due - self.computed_at
        days = int(abs(seconds) // SECONDS_PER_DAY)
        return days if seconds >= 0 else -days

    def reasons(self) -> tuple[str, ...]:
        """Why the entry is in its state, one sentence each: every open exposure and flag,
        then the schedule (``overdue since 2026-01-31 (3 days)``, ``due 2026-02-03 (in 2
        days)``); empty for a secret that is ``ok``."""
        found = [_exposure_reason(exposure) for exposure in self.exposures]
        found.extend(_flag_reason(flag) for flag in self.flags)
        schedule = self._schedule_reason()
        if schedule is not None:
            found.append(schedule)
        return tuple(found)

    def why(self) -> str:
        """The reasons as one line ("" when there are none)."""
        return "; ".join(self.reasons())

    def _schedule_reason(self) -> str | None:
        if self.next_due is None or self.by_schedule is RotationState.OK:
            return None
        days = abs(self.days_left or 0)
        span = f"{days} day{'' if days == 1 else 's'}" if days else "less than a day"
        when = day_of(self.next_due)
        if self.by_schedule is RotationState.OVERDUE:
            return f"overdue since {when} ({span})"
        return f"due {when} (in {span})"


def day_of(timestamp: float) -> str:
    """The UTC date of ``timestamp`` as ``2026-01-31``."""
    return datetime.fromtimestamp(timestamp, tz=UTC).date().isoformat()


def _exposure_reason(exposure: ExposureRecord) -> str:
    return f"exposed at {exposure.location} ({exposure.rule_id}, {day_of(exposure.detected_at)})"


def _flag_reason(flag: RotationFlag) -> str:
    detail = f": {flag.detail}" if flag.detail else ""
    return f"flagged for rotation ({flag.reason}{detail})"


def effective_period(
    rotation_days: int | None, policy_days: int | None
) -> tuple[int | None, PeriodSource | None]:
    """The period that applies and where it comes from: the shorter of the secret's own and
    its environment policy's (the secret's on a tie), either alone when only one is set,
    else (None, None)."""
    if policy_days is not None and (rotation_days is None or policy_days < rotation_days):
        return policy_days, PeriodSource.POLICY
    if rotation_days is not None:
        return rotation_days, PeriodSource.SECRET
    return None, None


def open_exposures(exposures: Sequence[ExposureRecord], version: int) -> tuple[ExposureRecord, ...]:
    """The exposures of version ``version`` (the current one); older ones are resolved."""
    return tuple(exposure for exposure in exposures if exposure.version == version)


def open_flags(flags: Sequence[RotationFlag], version: int) -> tuple[RotationFlag, ...]:
    """The flags that still hold for current version ``version``: those of that version or
    a newer one, oldest first."""
    return tuple(
        sorted((flag for flag in flags if flag.version >= version), key=lambda f: f.flagged_at)
    )


def schedule_entry(facts: SecretRotationFacts, now: float, reminder_days: int) -> ScheduleEntry:
    """Computes the schedule of one secret at ``now`` with a reminder window of
    ``reminder_days`` days (see the module docstring for the rules)."""
    period, source = effective_period(facts.rotation_days, facts.policy_days)
    next_due = facts.last_rotated + period * SECONDS_PER_DAY if period is not None else None
    exposures = open_exposures(facts.exposures, facts.version)
    flags = open_flags(facts.flags, facts.version)
    if next_due is None:
        by_schedule = RotationState.OK
    elif now > next_due:
        by_schedule = RotationState.OVERDUE
    elif now >= next_due - max(0, reminder_days) * SECONDS_PER_DAY:
        by_schedule = RotationState.DUE
    else:
        by_schedule = RotationState.OK
    state = RotationState.ROTATE_NOW if exposures or flags else by_schedule
    return ScheduleEntry(
        secret_id=facts.secret_id,
        project=facts.project,
        environment=facts.environment,
        key=facts.key,
        version=facts.version,
        last_rotated=facts.last_rotated,
        period_days=period,
        period_source=source,
        next_due=next_due,
        state=state,
        by_schedule=by_schedule,
        exposures=exposures,
        flags=flags,
        computed_at=now,
    )


def schedule_sort_key(entry: ScheduleEntry) -> tuple[int, bool, float, str, str, str]:
    """Most urgent first (rotate now, overdue, due, ok), then soonest due (secrets without
    a period last), then by project, environment and key."""
    return (
        _URGENCY[entry.state],
        entry.next_due is None,
        entry.next_due or 0.0,
        entry.project,
        entry.environment,
        entry.key,
    )


def schedule_order(entries: Sequence[ScheduleEntry]) -> list[ScheduleEntry]:
    """The entries in ``schedule_sort_key`` order."""
    return sorted(entries, key=schedule_sort_key)


def notice_for(entry: ScheduleEntry) -> RotationState | None:
    """The reminder an entry calls for: ``due`` in the reminder window, ``overdue`` past its
    due time and for a secret to rotate now (due at once); None when it is ``ok``."""
    if entry.state is RotationState.DUE:
        return RotationState.DUE
    if entry.state in (RotationState.OVERDUE, RotationState.ROTATE_NOW):
        return RotationState.OVERDUE
    return None


MAX_NOTE_LENGTH = 300


def validate_flag_note(note: object) -> str:
    """Returns the note of a manual rotation flag, stripped: non-empty text of at most 300
    characters without control characters. Raises InvalidInput naming ``note`` otherwise."""
    if not isinstance(note, str) or not note.strip():
        raise InvalidInput("note must say why the secret must be rotated now", field="note")
    text = note.strip()
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidInput(f"note must be at most {MAX_NOTE_LENGTH} characters", field="note")
    if CONTROL_CHARACTERS.search(text):
        raise InvalidInput("note must not contain control characters", field="note")
    return text
