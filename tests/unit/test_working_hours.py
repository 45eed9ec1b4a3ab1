"""Working hours: parsing, the canonical text, and which moments fall inside."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from coffer.domain.errors import InvalidInput
from coffer.domain.working_hours import parse_working_hours


def at(text: str, zone: str = "UTC") -> float:
    """Unix time of an ISO local time in ``zone``."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_weekday_office_hours_in_utc() -> None:
    """Mon-Fri 09:00-18:00 UTC holds a Tuesday 10:00 and excludes 08:59, 18:00 and Saturday."""
    hours = parse_working_hours("Mon-Fri 09:00-18:00 UTC")
    assert hours.contains(at("2026-01-06T10:00"))  # a Tuesday
    assert hours.contains(at("2026-01-06T09:00"))
    assert not hours.contains(at("2026-01-06T08:59"))
    assert not hours.contains(at("2026-01-06T18:00"))
    assert not hours.contains(at("2026-01-10T12:00"))  # a Saturday


def test_zone_defaults_to_utc_and_text_is_canonical() -> None:
    """Without a zone the hours are UTC; day names of any case and full names are accepted
    and written back in one form."""
    assert str(parse_working_hours("mon-FRI 09:00-18:00")) == "Mon-Fri 09:00-18:00 UTC"
    assert str(parse_working_hours("Monday,wed,Friday 08:00-17:00")) == (
        "Mon,Wed,Fri 08:00-17:00 UTC"
    )
    assert str(parse_working_hours("Sat,Sun,Mon 07:30-24:00 Z")) == "Mon,Sat-Sun 07:30-24:00 UTC"


def test_iana_zone_follows_daylight_saving() -> None:
    """Europe/Paris hours hold 09:30 Paris time in winter (08:30 UTC) and in summer (07:30 UTC)."""
    hours = parse_working_hours("Mon-Fri 09:00-18:00 Europe/Paris")
    assert hours.contains(datetime(2026, 1, 6, 8, 30, tzinfo=UTC).timestamp())
    assert hours.contains(datetime(2026, 7, 7, 7, 30, tzinfo=UTC).timestamp())
    assert not hours.contains(datetime(2026, 7, 7, 6, 30, tzinfo=UTC).timestamp())
    assert hours.local_time(datetime(2026, 7, 11, 1, 12, tzinfo=UTC).timestamp()) == "Sat 03:12"


def test_overnight_window_belongs_to_the_day_it_starts() -> None:
    """Fri 22:00-06:00 holds Friday 23:00 and Saturday 05:00 but not Friday 05:00."""
    hours = parse_working_hours("Fri 22:00-06:00")
    assert hours.contains(at("2026-01-09T23:00"))  # Friday
    assert hours.contains(at("2026-01-10T05:00"))  # Saturday morning
    assert not hours.contains(at("2026-01-09T05:00"))
    assert not hours.contains(at("2026-01-10T23:00"))


def test_wrapping_day_range() -> None:
    """Fri-Mon covers Friday, Saturday, Sunday and Monday."""
    hours = parse_working_hours("Fri-Mon 00:00-24:00")
    assert str(hours) == "Mon,Fri-Sun 00:00-24:00 UTC"
    assert hours.contains(at("2026-01-11T12:00"))  # Sunday
    assert not hours.contains(at("2026-01-07T12:00"))  # Wednesday


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "give days"),
        ("Mon-Fri", "DAYS START-END"),
        ("Mon-Fri 9-18 UTC", "HH:MM"),
        ("Mon-Fri 09:00 UTC", "START-END"),
        ("Mon-Fro 09:00-18:00", "not a day"),
        ("Mon-Fri 09:00-25:00", "not a 24-hour"),
        ("Mon-Fri 09:60-18:00", "not a 24-hour"),
        ("Mon-Fri 09:00-09:00", "must differ"),
        ("Mon-Fri 24:00-09:00", "before 24:00"),
        ("Mon-Fri 09:00-18:00 Mars/Olympus", "not a time zone"),
        ("Mon-Fri 09:00-18:00 ../../etc/passwd", "not a time zone"),
        ("Mon-Fri 09:00-18:00 UTC extra", "DAYS START-END"),
        ("Mon-Fri 09:00-18:00 " + "A" * 60, "at most 64"),
    ],
)
def test_bad_input_names_the_field_and_the_rule(text: str, rule: str) -> None:
    """Malformed working hours are refused with InvalidInput naming working_hours."""
    with pytest.raises(InvalidInput) as caught:
        parse_working_hours(text)
    assert caught.value.field == "working_hours"
    assert caught.value.message.startswith("working_hours: ")
    assert rule in caught.value.message
