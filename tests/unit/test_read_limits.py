"""Time to live and read limits (coffer.domain.read_limits): parsing, state, and changes."""

from __future__ import annotations

from typing import Any

import pytest

from coffer.domain.errors import InvalidInput
from coffer.domain.read_limits import (
    MAX_READS,
    MAX_TTL_SECONDS,
    NO_LIMITS,
    LimitChange,
    LimitState,
    LimitStatus,
    ReadLimits,
    parse_limit_change,
    parse_max_reads,
    parse_read_limits,
    parse_ttl,
)

NOW = 1_800_000_000.0
DURATION_RULE = "ttl_seconds must be a duration such as 30s, 5m, 2h or 7d"


def test_the_bounds_are_one_year_and_a_million_reads() -> None:
    """The documented limits: 365 days of TTL and 1,000,000 reads."""
    assert (MAX_TTL_SECONDS, MAX_READS) == (31_536_000, 1_000_000)


# -- parse_ttl ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (1, 1),
        (3600, 3600),
        (31_536_000, 31_536_000),
        ("1", 1),
        ("3600", 3600),
        ("30s", 30),
        ("5m", 300),
        ("2h", 7200),
        ("7d", 604_800),
        ("365d", 31_536_000),
        (" 5M ", 300),
        ("5 m", 300),
    ],
)
def test_parse_ttl_accepts_seconds_and_units(given: str | int, seconds: int) -> None:
    """Whole seconds, or a number with s/m/h/d (any case, spaces around), up to 365 days."""
    assert parse_ttl(given) == seconds


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (0, "ttl_seconds must be at least 1 second"),
        (-1, "ttl_seconds must be at least 1 second"),
        ("0s", "ttl_seconds must be at least 1 second"),
        (31_536_001, "ttl_seconds must be at most 365 days (31536000 seconds)"),
        ("366d", "ttl_seconds must be at most 365 days (31536000 seconds)"),
        ("8761h", "ttl_seconds must be at most 365 days (31536000 seconds)"),
        (10**30, "ttl_seconds must be at most 365 days (31536000 seconds)"),
        ("", DURATION_RULE),
        ("abc", DURATION_RULE),
        ("10y", DURATION_RULE),
        ("1.5", DURATION_RULE),
        ("-5", DURATION_RULE),
        ("5mm", DURATION_RULE),
        ("1000000000", DURATION_RULE),
        (True, DURATION_RULE),
        (False, DURATION_RULE),
    ],
)
def test_parse_ttl_rejects_with_the_rule(given: Any, message: str) -> None:
    """Every value outside the rule raises InvalidInput naming ttl_seconds and the rule."""
    with pytest.raises(InvalidInput) as raised:
        parse_ttl(given)
    assert (raised.value.field, raised.value.message) == ("ttl_seconds", message)


def test_parse_ttl_names_the_field_it_is_given() -> None:
    """A caller parsing another field gets errors naming that field."""
    with pytest.raises(InvalidInput) as raised:
        parse_ttl("soon", field="expires_in")
    assert raised.value.field == "expires_in"
    assert raised.value.message.startswith("expires_in must be")


# -- parse_max_reads ------------------------------------------------------------------------


@pytest.mark.parametrize("given", [1, 2, 999_999, 1_000_000])
def test_parse_max_reads_accepts_1_to_a_million(given: int) -> None:
    """Whole numbers from 1 to MAX_READS come back unchanged."""
    assert parse_max_reads(given) == given


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (0, "max_reads must be at least 1"),
        (-1, "max_reads must be at least 1"),
        (1_000_001, "max_reads must be at most 1,000,000"),
        (True, "max_reads must be a whole number of reads"),
        (False, "max_reads must be a whole number of reads"),
        ("3", "max_reads must be a whole number of reads"),
        (1.5, "max_reads must be a whole number of reads"),
        (2.0, "max_reads must be a whole number of reads"),
        (None, "max_reads must be a whole number of reads"),
    ],
)
def test_parse_max_reads_rejects_with_the_rule(given: Any, message: str) -> None:
    """Anything but a whole number in range raises InvalidInput naming max_reads."""
    with pytest.raises(InvalidInput) as raised:
        parse_max_reads(given)
    assert (raised.value.field, raised.value.message) == ("max_reads", message)


# -- parse_read_limits and ReadLimits --------------------------------------------------------


def test_parse_read_limits_without_anything_is_unlimited() -> None:
    """No TTL and no limit: an ordinary secret that burns (the default) if ever limited."""
    limits = parse_read_limits()
    assert limits == ReadLimits(ttl_seconds=None, max_reads=None, burn=True)
    assert limits.limited is False
    assert limits.audit_fields() == {"ttl_seconds": None, "max_reads": None}


def test_parse_read_limits_converts_and_validates_each_field() -> None:
    """The TTL is converted to seconds, the limit checked, and delete=false means seal."""
    limits = parse_read_limits(ttl="2h", max_reads=3, delete=False)
    assert limits == ReadLimits(ttl_seconds=7200, max_reads=3, burn=False)
    assert limits.limited is True
    assert limits.audit_fields() == {"ttl_seconds": 7200, "max_reads": 3, "on_last_read": "seal"}
    assert parse_read_limits(max_reads=1).audit_fields() == {"ttl_seconds": None, "max_reads": 1}
    assert parse_read_limits(ttl=60).limited is True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": 0}, "ttl_seconds"),
        ({"ttl": "forever"}, "ttl_seconds"),
        ({"max_reads": 0}, "max_reads"),
        ({"ttl": 60, "max_reads": "many"}, "max_reads"),
    ],
)
def test_parse_read_limits_names_the_bad_field(kwargs: dict[str, Any], field: str) -> None:
    """The first field that breaks its rule is named."""
    with pytest.raises(InvalidInput) as raised:
        parse_read_limits(**kwargs)
    assert raised.value.field == field


def test_state_from_counts_the_ttl_from_now_with_no_reads() -> None:
    """A fresh state: expiry at now + TTL, nothing read, not sealed."""
    assert ReadLimits(ttl_seconds=60, max_reads=2, burn=False).state_from(NOW) == LimitState(
        expires_at=NOW + 60, max_reads=2, read_count=0, burn=False, sealed_at=None
    )
    assert ReadLimits().state_from(NOW) == NO_LIMITS


# -- LimitState -----------------------------------------------------------------------------


def test_no_limits_is_unlimited_active_and_never_expires() -> None:
    """An ordinary secret: nothing to count, nothing to expire."""
    assert NO_LIMITS.limited is False
    assert NO_LIMITS.status is LimitStatus.ACTIVE
    assert NO_LIMITS.reads_remaining is None
    assert NO_LIMITS.expired(1e18) is False
    assert NO_LIMITS.describe() == {
        "status": "active",
        "read_count": 0,
        "max_reads": None,
        "reads_remaining": None,
        "expires_at": None,
        "delete": True,
    }


def test_expiry_starts_exactly_at_expires_at() -> None:
    """Readable up to just before expires_at; expired from that instant on."""
    state = LimitState(expires_at=NOW)
    assert state.limited is True
    assert state.expired(NOW - 0.001) is False
    assert state.expired(NOW) is True
    assert state.expired(NOW + 1) is True


def test_reads_remaining_and_status_follow_the_counters() -> None:
    """Remaining reads are the limit minus the count (never below 0); sealed once sealed_at."""
    assert LimitState(max_reads=3, read_count=1).reads_remaining == 2
    assert LimitState(max_reads=3, read_count=3).reads_remaining == 0
    assert LimitState(max_reads=3, read_count=5).reads_remaining == 0
    sealed = LimitState(max_reads=1, read_count=1, burn=False, sealed_at=NOW)
    assert sealed.status is LimitStatus.SEALED
    assert sealed.describe() == {
        "status": "sealed",
        "read_count": 1,
        "max_reads": 1,
        "reads_remaining": 0,
        "expires_at": None,
        "delete": False,
    }


# -- parse_limit_change and LimitChange ------------------------------------------------------


def test_an_empty_change_is_refused_naming_body() -> None:
    """A PATCH with nothing to change (or only reset=false) is an error on "body"."""
    for given in ({}, {"reset": False}):
        with pytest.raises(InvalidInput) as raised:
            parse_limit_change(given)
        assert raised.value.field == "body"
        assert raised.value.message == (
            "give at least one of ttl_seconds, max_reads, delete or reset"
        )


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"value": "x"}, "value"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"ttl_seconds": 1.5}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"ttl_seconds": "10y"}, "ttl_seconds"),
        ({"max_reads": 0}, "max_reads"),
        ({"max_reads": 1_000_001}, "max_reads"),
        ({"max_reads": True}, "max_reads"),
        ({"delete": None}, "delete"),
        ({"delete": "no"}, "delete"),
        ({"reset": "yes"}, "reset"),
        ({"reset": None}, "reset"),
    ],
)
def test_a_bad_change_names_its_field(given: dict[str, Any], field: str) -> None:
    """Unknown fields and values breaking their rule are refused, naming the field."""
    with pytest.raises(InvalidInput) as raised:
        parse_limit_change(given)
    assert raised.value.field == field


def test_only_sent_fields_change_and_null_removes() -> None:
    """Each sent field sets its column; null TTL or limit clears it; delete picks burn/seal."""
    change = parse_limit_change({"ttl_seconds": "5m", "max_reads": None, "delete": False})
    assert change == LimitChange(values={"ttl_seconds": 300, "max_reads": None, "burn": False})
    # Removing the read limit clears the count and any seal with it.
    assert change.column_values(NOW) == {
        "expires_at": NOW + 300,
        "max_reads": None,
        "read_count": 0,
        "sealed_at": None,
        "burn": False,
    }
    assert parse_limit_change({"ttl_seconds": None}).column_values(NOW) == {"expires_at": None}
    reset = parse_limit_change({"reset": True})
    assert reset == LimitChange(values={}, reset=True)
    assert reset.column_values(NOW) == {"read_count": 0, "sealed_at": None}


def test_audit_fields_record_the_change_without_internal_names() -> None:
    """secret.limits_changed metadata: the sent fields, on_last_read instead of burn, reset."""
    assert parse_limit_change({"max_reads": 5, "delete": True}).audit_fields() == {
        "max_reads": 5,
        "on_last_read": "burn",
        "reset": False,
    }
    assert parse_limit_change({"ttl_seconds": 60, "reset": True}).audit_fields() == {
        "ttl_seconds": 60,
        "reset": True,
    }
    assert parse_limit_change({"delete": False}).audit_fields() == {
        "on_last_read": "seal",
        "reset": False,
    }


def test_applied_to_restarts_the_ttl_from_now_and_keeps_the_rest() -> None:
    """A TTL change counts from ``now``; unsent fields keep their stored values."""
    before = LimitState(expires_at=NOW + 10, max_reads=4, read_count=2, burn=True)
    after = parse_limit_change({"ttl_seconds": 3600}).applied_to(before, NOW)
    assert after == LimitState(expires_at=NOW + 3600, max_reads=4, read_count=2, burn=True)
    unlimited = parse_limit_change({"max_reads": None, "ttl_seconds": None})
    assert unlimited.applied_to(before, NOW) == LimitState(read_count=0, burn=True)


def test_applied_to_refuses_a_limit_at_or_below_the_reads_counted() -> None:
    """With 3 reads counted, max_reads 3 (or 2) would leave a secret that can never be read
    yet is neither burned nor sealed: refused on max_reads. Above it is fine."""
    before = LimitState(max_reads=5, read_count=3)
    for limit in (2, 3):
        with pytest.raises(InvalidInput) as raised:
            parse_limit_change({"max_reads": limit}).applied_to(before, NOW)
        assert raised.value.field == "max_reads"
        assert raised.value.message == (
            "max_reads must be above the 3 reads already counted; pass reset to count afresh"
        )
    assert parse_limit_change({"max_reads": 4}).applied_to(before, NOW) == LimitState(
        max_reads=4, read_count=3
    )


def test_reset_makes_a_lower_limit_acceptable_and_unseals() -> None:
    """reset zeroes the count (so any limit is above it) and clears sealed_at."""
    sealed = LimitState(max_reads=2, read_count=2, burn=False, sealed_at=NOW - 5)
    after = parse_limit_change({"max_reads": 1, "reset": True}).applied_to(sealed, NOW)
    assert after == LimitState(max_reads=1, read_count=0, burn=False, sealed_at=None)
    assert after.status is LimitStatus.ACTIVE
    only_reset = parse_limit_change({"reset": True}).applied_to(sealed, NOW)
    assert only_reset == LimitState(max_reads=2, read_count=0, burn=False, sealed_at=None)


def test_a_sealed_secret_stays_sealed_without_reset() -> None:
    """Changing the TTL of a sealed secret keeps it sealed (only reset unseals)."""
    sealed = LimitState(max_reads=1, read_count=1, burn=False, sealed_at=NOW - 5)
    after = parse_limit_change({"ttl_seconds": 60}).applied_to(sealed, NOW)
    assert after == LimitState(
        expires_at=NOW + 60, max_reads=1, read_count=1, burn=False, sealed_at=NOW - 5
    )
    assert after.status is LimitStatus.SEALED
