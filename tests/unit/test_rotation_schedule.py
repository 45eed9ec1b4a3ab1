"""The rotation schedule's rules (``domain.rotation_schedule``) and the rotator configuration
rules (``domain.rotators``), as vectors: period precedence, the reminder window's edges,
exposures and flags resolved by a newer version, the reminders each state calls for, and
the bad input a rotator's configuration refuses."""

from __future__ import annotations

from typing import Any

import pytest

from coffer.domain.errors import InvalidInput
from coffer.domain.exposures import ExposureRecord
from coffer.domain.references import SecretRef
from coffer.domain.rotation_schedule import (
    PeriodSource,
    RotationFlag,
    RotationState,
    SecretRotationFacts,
    effective_period,
    notice_for,
    schedule_entry,
    schedule_order,
    validate_flag_note,
)
from coffer.domain.rotators import (
    ALPHABETS,
    Alphabet,
    RotatorConfig,
    RotatorKind,
    parse_rotator_config,
)

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z: the current version's creation


def facts(version: int = 3, **changes: Any) -> SecretRotationFacts:
    """A secret at ``version`` written at ``T0`` with ``changes``."""
    base: dict[str, Any] = {
        "secret_id": "S",
        "project": "app",
        "environment": "production",
        "key": "db/password",
        "version": version,
        "last_rotated": T0,
    }
    return SecretRotationFacts(**{**base, **changes})


def exposure(version: int, location: str = "src/app.py:12") -> ExposureRecord:
    """An exposure of ``version`` found at ``location``."""
    return ExposureRecord(version, T0 + DAY, "stripe-secret-key", location, "U1")


def flag(version: int, reason: str = "offboarding", detail: str = "bob@acme.test") -> RotationFlag:
    """A flag of ``version`` for ``reason``."""
    return RotationFlag(version, reason, detail, T0 + 2 * DAY, "U2")


@pytest.mark.parametrize(
    ("secret_days", "policy_days", "expected"),
    [
        (30, 90, (30, PeriodSource.SECRET)),
        (120, 90, (90, PeriodSource.POLICY)),
        (90, 90, (90, PeriodSource.SECRET)),
        (None, 90, (90, PeriodSource.POLICY)),
        (30, None, (30, PeriodSource.SECRET)),
        (None, None, (None, None)),
    ],
)
def test_period_is_the_shorter_of_the_secret_and_the_policy(
    secret_days: int | None, policy_days: int | None, expected: tuple[Any, Any]
) -> None:
    """The shorter of the secret's rotation_days and its environment policy's
    max_rotation_days applies (the secret's on a tie, either alone when only one is set);
    without either there is no period."""
    assert effective_period(secret_days, policy_days) == expected
    entry = schedule_entry(facts(rotation_days=secret_days, policy_days=policy_days), T0, 7)
    assert (entry.period_days, entry.period_source) == expected


# (seconds after T0, reminder days) -> state, for a 30-day period (due at T0 + 30 days).
WINDOW = [
    (0.0, 7, RotationState.OK),
    (23 * DAY - 1, 7, RotationState.OK),
    (23 * DAY, 7, RotationState.DUE),  # exactly reminder_days before: due
    (29 * DAY, 7, RotationState.DUE),
    (30 * DAY, 7, RotationState.DUE),  # the due moment itself is not yet overdue
    (30 * DAY + 1, 7, RotationState.OVERDUE),
    (400 * DAY, 7, RotationState.OVERDUE),
    (30 * DAY - 1, 0, RotationState.OK),  # no window: due only at the moment itself
    (30 * DAY, 0, RotationState.DUE),
    (1.0, 30, RotationState.DUE),  # a window as long as the period
    (1.0, -5, RotationState.OK),  # a negative window counts as none
]


@pytest.mark.parametrize(("after", "reminder", "state"), WINDOW)
def test_reminder_window_edges(after: float, reminder: int, state: RotationState) -> None:
    """Due from reminder_days before the due time up to it (both included), overdue
    strictly after it, ok before the window."""
    entry = schedule_entry(facts(rotation_days=30), T0 + after, reminder)
    assert entry.state is state
    assert entry.by_schedule is state
    assert entry.next_due == T0 + 30 * DAY


def test_without_a_period_a_secret_is_never_due_on_schedule() -> None:
    """A secret with neither its own period nor a policy's stays ok for ever."""
    entry = schedule_entry(facts(), T0 + 10_000 * DAY, 7)
    assert entry.state is RotationState.OK and entry.next_due is None
    assert entry.days_left is None and entry.why() == ""


def test_exposure_of_the_current_version_means_rotate_now() -> None:
    """An exposure of the current version makes the secret ``rotate now`` whatever its
    schedule, and the reason names where it leaked."""
    entry = schedule_entry(facts(exposures=(exposure(3),), rotation_days=90), T0, 7)
    assert entry.state is RotationState.ROTATE_NOW
    assert entry.by_schedule is RotationState.OK
    assert entry.exposures == (exposure(3),)
    assert entry.why() == "exposed at src/app.py:12 (stripe-secret-key, 2026-01-02)"


def test_exposure_of_an_older_version_does_not_count() -> None:
    """An exposure of version 2 is resolved once version 3 is current."""
    entry = schedule_entry(facts(exposures=(exposure(2),)), T0, 7)
    assert entry.state is RotationState.OK
    assert entry.exposures == ()


@pytest.mark.parametrize(
    ("flag_versions", "current", "state"),
    [
        ((3,), 3, RotationState.ROTATE_NOW),  # flagged at the current version
        ((4,), 3, RotationState.ROTATE_NOW),  # a flag of a newer version still holds
        ((2,), 3, RotationState.OK),  # resolved by writing version 3
        ((1, 2), 3, RotationState.OK),
        ((2, 3), 3, RotationState.ROTATE_NOW),
    ],
)
def test_flags_hold_until_a_newer_version_is_written(
    flag_versions: tuple[int, ...], current: int, state: RotationState
) -> None:
    """A flag holds while the current version is the flagged one or older."""
    entry = schedule_entry(facts(current, flags=tuple(flag(v) for v in flag_versions)), T0, 7)
    assert entry.state is state
    assert [f.version for f in entry.flags] == [v for v in flag_versions if v >= current]


def test_reasons_list_exposures_flags_and_the_schedule() -> None:
    """An overdue, flagged and exposed secret gives every reason, the schedule last, with
    the offboarded member's e-mail address."""
    entry = schedule_entry(
        facts(rotation_days=30, exposures=(exposure(3),), flags=(flag(3),)),
        T0 + 33 * DAY + 5,
        7,
    )
    assert entry.state is RotationState.ROTATE_NOW
    assert entry.by_schedule is RotationState.OVERDUE
    assert entry.days_left == -3
    assert entry.reasons() == (
        "exposed at src/app.py:12 (stripe-secret-key, 2026-01-02)",
        "flagged for rotation (offboarding: bob@acme.test)",
        "overdue since 2026-01-31 (3 days)",
    )


@pytest.mark.parametrize(
    ("after", "why"),
    [
        (25 * DAY, "due 2026-01-31 (in 5 days)"),
        (29 * DAY, "due 2026-01-31 (in 1 day)"),
        (30 * DAY - 60, "due 2026-01-31 (in less than a day)"),
        (30 * DAY + 60, "overdue since 2026-01-31 (less than a day)"),
        (31 * DAY + 60, "overdue since 2026-01-31 (1 day)"),
    ],
)
def test_schedule_reason_counts_whole_days(after: float, why: str) -> None:
    """The schedule's reason gives the due date and the whole days to or since it."""
    assert schedule_entry(facts(rotation_days=30), T0 + after, 7).why() == why


def test_order_is_most_urgent_then_soonest_due() -> None:
    """Rotate now, then overdue, due and ok; within a state the soonest due first, and
    secrets without a period last."""
    now = T0 + 40 * DAY
    entries = [
        schedule_entry(facts(key="ok-none"), now, 7),
        schedule_entry(facts(key="ok-late", rotation_days=365), now, 7),
        schedule_entry(facts(key="due", rotation_days=45), now, 7),
        schedule_entry(facts(key="overdue-b", rotation_days=30), now, 7),
        schedule_entry(facts(key="overdue-a", rotation_days=10), now, 7),
        schedule_entry(facts(key="now", flags=(flag(3),)), now, 7),
    ]
    ordered = [entry.key for entry in schedule_order(entries)]
    assert ordered == ["now", "overdue-a", "overdue-b", "due", "ok-late", "ok-none"]


@pytest.mark.parametrize(
    ("entry_facts", "after", "notice"),
    [
        (facts(rotation_days=30), 0.0, None),
        (facts(rotation_days=30), 25 * DAY, RotationState.DUE),
        (facts(rotation_days=30), 31 * DAY, RotationState.OVERDUE),
        (facts(exposures=(exposure(3),)), 0.0, RotationState.OVERDUE),
        (facts(flags=(flag(3),), rotation_days=30), 25 * DAY, RotationState.OVERDUE),
    ],
)
def test_each_state_calls_for_its_reminder(
    entry_facts: SecretRotationFacts, after: float, notice: RotationState | None
) -> None:
    """Due sends rotation.due; overdue and rotate now (due at once) send rotation.overdue;
    ok sends nothing."""
    assert notice_for(schedule_entry(entry_facts, T0 + after, 7)) is notice


@pytest.mark.parametrize("note", [None, "", "   ", "x" * 301, "line\nbreak", 42])
def test_flag_notes_are_checked(note: object) -> None:
    """A manual flag's note must be 1 to 300 characters of text without control
    characters."""
    with pytest.raises(InvalidInput) as raised:
        validate_flag_note(note)
    assert raised.value.field == "note"


def test_flag_note_is_stripped() -> None:
    """Surrounding spaces are dropped from a note."""
    assert validate_flag_note("  leaked in a screen share ") == "leaked in a screen share"


GOOD_CONFIGS = [
    ({"kind": "random"}, RotatorConfig(RotatorKind.RANDOM)),
    (
        {"kind": "random", "length": 16, "alphabet": "hex"},
        RotatorConfig(RotatorKind.RANDOM, length=16, alphabet=Alphabet.HEX),
    ),
    (
        {"kind": "random", "length": 256, "alphabet": "ascii"},
        RotatorConfig(RotatorKind.RANDOM, length=256, alphabet=Alphabet.ASCII),
    ),
    (
        {"kind": "postgresql", "role": "app_user", "connection": "ops/production/db/ADMIN"},
        RotatorConfig(
            RotatorKind.POSTGRESQL,
            role="app_user",
            connection=SecretRef("ops", "production", "db/ADMIN"),
        ),
    ),
]


@pytest.mark.parametrize(("body", "config"), GOOD_CONFIGS)
def test_good_rotator_configs_parse_and_round_trip(
    body: dict[str, object], config: RotatorConfig
) -> None:
    """Valid configurations parse, and their stored form parses back to the same."""
    parsed = parse_rotator_config(body)
    assert parsed == config
    assert RotatorConfig.from_json(parsed.kind.value, parsed.to_json()) == parsed


BAD_CONFIGS = [
    ({}, "kind"),
    ({"kind": "ssh"}, "kind"),
    ({"kind": 3}, "kind"),
    ({"kind": "random", "length": 15}, "length"),
    ({"kind": "random", "length": 257}, "length"),
    ({"kind": "random", "length": "32"}, "length"),
    ({"kind": "random", "length": True}, "length"),
    ({"kind": "random", "alphabet": "emoji"}, "alphabet"),
    ({"kind": "random", "role": "x"}, "role"),
    ({"kind": "postgresql", "connection": "ops/production/K"}, "role"),
    ({"kind": "postgresql", "role": "app_user"}, "connection"),
    ({"kind": "postgresql", "role": "app user", "connection": "a/b/K"}, "role"),
    ({"kind": "postgresql", "role": 'x"; DROP ROLE y; --', "connection": "a/b/K"}, "role"),
    ({"kind": "postgresql", "role": "1abc", "connection": "a/b/K"}, "role"),
    ({"kind": "postgresql", "role": "r" * 64, "connection": "a/b/K"}, "role"),
    ({"kind": "postgresql", "role": "pg_monitor", "connection": "a/b/K"}, "role"),
    ({"kind": "postgresql", "role": "app", "connection": "a/b"}, "connection"),
    (
        {"kind": "postgresql", "role": "app", "connection": "postgresql://u:pw@h/db"},
        "connection",
    ),
    ({"kind": "postgresql", "role": "app", "connection": "a/b/K", "alphabet": "hex"}, "alphabet"),
]


@pytest.mark.parametrize(("body", "field"), BAD_CONFIGS)
def test_bad_rotator_configs_name_the_field(body: dict[str, object], field: str) -> None:
    """Unknown kinds, lengths outside 16..256, unknown alphabets, roles that are not plain
    identifiers, connections that are not project/env/KEY and fields of another kind are
    refused naming the field; a pasted URL is not echoed."""
    with pytest.raises(InvalidInput) as raised:
        parse_rotator_config(body)
    assert raised.value.field == field
    assert "pw@" not in raised.value.message


def test_alphabets_hold_what_their_names_say() -> None:
    """Each alphabet is the character set its name promises, without duplicates."""
    assert len(ALPHABETS[Alphabet.ALNUM]) == 62
    assert ALPHABETS[Alphabet.HEX] == "0123456789abcdef"
    assert len(ALPHABETS[Alphabet.BASE64URL]) == 64
    ascii_set = ALPHABETS[Alphabet.ASCII]
    assert len(ascii_set) == 94 and " " not in ascii_set and "~" in ascii_set
    assert all(len(set(chars)) == len(chars) for chars in ALPHABETS.values())
