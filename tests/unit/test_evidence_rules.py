"""The rules an evidence pack is built by: its period (and bad dates), who was a member with
which role at the period's end, the permission matrix, week buckets, and CSV cells that a
spreadsheet would run as formulas."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coffer.cli.csv_cells import cell
from coffer.cli.evidence.tables import csv_text
from coffer.domain.errors import InvalidInput, InvalidQuery
from coffer.domain.evidence import (
    CurrentMember,
    MembershipEvent,
    PastMember,
    by_area_and_week,
    human_duration,
    members_at,
    parse_period,
    permission_matrix,
    week_starts,
)

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC).timestamp()


def at(day: str) -> float:
    """Unix seconds of midnight UTC of ``day``."""
    return datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()


def test_dates_cover_whole_utc_days() -> None:
    """``from`` starts at its midnight; ``to`` includes its whole day."""
    period = parse_period("2026-01-01", "2026-03-31", now=NOW)
    assert period.start == at("2026-01-01")
    assert period.end == at("2026-04-01")
    assert period.contains(at("2026-03-31") + 86399) and not period.contains(period.end)


def test_iso_times_are_accepted_and_a_missing_offset_means_utc() -> None:
    """ISO 8601 times are exact instants; one without an offset is UTC."""
    period = parse_period("2026-01-01T08:00:00", "2026-01-02T10:00:00+02:00", now=NOW)
    assert period.start == at("2026-01-01") + 8 * 3600
    assert period.end == at("2026-01-02") + 8 * 3600


def test_today_may_end_the_period_and_data_stops_now() -> None:
    """``to`` may be today; reads of data stop at now, not at the day's end."""
    period = parse_period("2026-06-01", "2026-06-15", now=NOW)
    assert period.data_end(NOW) == NOW


@pytest.mark.parametrize(
    ("start", "end", "field", "rule"),
    [
        ("2026-13-01", "2026-06-01", "from", "must be a date YYYY-MM-DD"),
        ("yesterday", "2026-06-01", "from", "got 'yesterday'"),
        ("2026-01-01", "", "to", "must be a date"),
        ("2026-01-01", None, "to", "got NoneType"),
        ("2026-05-01", "2026-04-01", "from", "must be on or before to"),
        ("2026-01-01", "2026-06-16", "to", "must not be later than today (2026-06-15 UTC)"),
        ("2023-01-01", "2026-06-01", "from", "at most 3 years"),
    ],
)
def test_bad_periods_are_refused_naming_the_parameter(
    start: object, end: object, field: str, rule: str
) -> None:
    """Unparsable dates, a period that runs backwards, a future end or one over three years
    long are refused naming the parameter and the rule."""
    with pytest.raises(InvalidQuery) as caught:
        parse_period(start, end, now=NOW, error=InvalidQuery)
    assert caught.value.field == field
    assert rule in caught.value.message
    assert caught.value.message.startswith(f"{field}: ")


def test_the_cli_names_its_options() -> None:
    """With the CLI's names the message names ``--to`` and the field is ``to``."""
    with pytest.raises(InvalidInput) as caught:
        parse_period("2026-01-01", "2099-01-01", now=NOW, fields=("--from", "--to"))
    assert caught.value.message.startswith("--to: ")
    assert caught.value.field == "to"


def test_exactly_three_years_is_allowed() -> None:
    """A period of three years (with a leap day) is accepted."""
    period = parse_period("2023-06-15", "2026-06-14", now=NOW)
    assert period.end - period.start == (365 * 3 + 1) * 86400


def test_members_at_the_end_take_the_role_they_had_then() -> None:
    """Role changes after the end are undone; people who joined later are left out; people
    who left after the end are listed with their role then."""
    end = at("2026-03-31")
    current = [
        CurrentMember("u1", "ann@acme.test", "admin", at("2026-01-05"), True),
        CurrentMember("u2", "ben@acme.test", "viewer", at("2026-04-10"), False),
    ]
    events = [
        MembershipEvent(at("2026-01-05"), "joined", "ann@acme.test", "viewer"),
        MembershipEvent(at("2026-02-01"), "joined", "eve@acme.test", "admin"),
        MembershipEvent(at("2026-04-20"), "role_changed", "ann@acme.test", "admin", "viewer"),
        MembershipEvent(at("2026-05-02"), "left", "eve@acme.test"),
    ]
    departed = [PastMember("u3", "eve@acme.test", at("2026-05-02"), "offboarded")]
    people = members_at(end, current, departed, events)
    assert [(p.email, p.role, p.status) for p in people] == [
        ("ann@acme.test", "viewer", "member"),
        ("eve@acme.test", "admin", "offboarded 2026-05-02"),
    ]


def test_a_pruned_log_falls_back_to_the_first_later_change() -> None:
    """Without entries before the end, the role before the first later change is used; an
    ownership transfer does not record it, so the role is then unknown (None)."""
    current = [CurrentMember("u1", "ann@acme.test", "owner", at("2025-01-01"), True)]
    changed = [
        MembershipEvent(at("2026-05-01"), "role_changed", "ann@acme.test", "owner", "admin"),
        MembershipEvent(at("2026-05-03"), "role_changed", "ann@acme.test", "admin", "owner"),
    ]
    assert members_at(at("2026-03-31"), current, [], changed)[0].role == "admin"
    transferred = [MembershipEvent(at("2026-05-01"), "owner_to", "ann@acme.test")]
    assert members_at(at("2026-03-31"), current, [], transferred)[0].role is None
    untouched = members_at(at("2026-03-31"), current, [], [])
    assert untouched[0].role == "owner"


def test_a_departed_member_keeps_the_role_recorded_when_they_left() -> None:
    """A person offboarded after the end, with no change in the log, has the role their
    offboarding recorded; one who left before the end is not listed."""
    departed = [
        PastMember("u9", "zed@acme.test", at("2026-05-01"), "offboarded", "admin"),
        PastMember("u8", "old@acme.test", at("2026-02-01"), "removed", "viewer"),
    ]
    people = members_at(at("2026-03-31"), [], departed, [])
    assert [(p.email, p.role, p.status) for p in people] == [
        ("zed@acme.test", "admin", "offboarded 2026-05-01")
    ]


def test_the_permission_matrix_is_what_the_policy_decides() -> None:
    """Viewers read, admins manage the team, only owners manage the audit log, machines
    need grants."""
    rows = {row["action"]: row for row in permission_matrix()}
    assert rows["secret.read"] == {
        "action": "secret.read",
        "viewer": "allowed",
        "admin": "allowed",
        "owner": "allowed",
        "machine": "denied",
    }
    assert rows["secret.write"]["viewer"] == "denied"
    assert rows["team.manage"]["admin"] == "allowed"
    assert rows["audit.manage"]["admin"] == "denied"
    assert rows["audit.manage"]["owner"] == "allowed"


def test_week_buckets_count_areas() -> None:
    """Events fall into 7-day buckets from the start, summed by area."""
    weeks = week_starts(at("2026-01-01"), at("2026-01-20"))
    assert len(weeks) == 3
    counts = by_area_and_week(
        [(0, "secret.read", 4), (0, "secret.created", 1), (2, "auth.login", 2), (9, "x.y", 1)],
        len(weeks),
    )
    assert counts == {"auth": [0, 0, 2], "secret": [5, 0, 0]}


def test_durations_read_in_whole_units() -> None:
    """Settings' seconds read as days, hours or minutes."""
    assert human_duration(90 * 86400) == "90 days"
    assert human_duration(3600) == "1 hour"
    assert human_duration(90) == "90 seconds"


@pytest.mark.parametrize("text", ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx"])
def test_csv_cells_that_start_a_formula_are_defused(text: str) -> None:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe."""
    assert cell(text) == "'" + text
    assert csv_text(("key",), [{"key": text}]).splitlines()[1].startswith(("'", "\"'"))


def test_csv_cells_show_lists_objects_and_booleans() -> None:
    """Lists join with "; ", objects are JSON, booleans yes/no, None empty."""
    assert cell(["a", "b"]) == "a; b"
    assert cell({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'
    assert (cell(True), cell(False), cell(None)) == ("yes", "no", "")
