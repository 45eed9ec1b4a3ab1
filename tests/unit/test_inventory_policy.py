"""Inventory fields, environment policies and the inventory's CSV, without I/O: parsing with
errors that name the field, the rules a secret breaks and the refusal that says how to fix
them, and CSV that a spreadsheet reads as data, never as formulas."""

from __future__ import annotations

import csv
import io

import pytest

from coffer.cli.csv_cells import cell as spreadsheet_safe
from coffer.cli.inventory_output import CSV_COLUMNS, inventory_csv
from coffer.domain.errors import InvalidInput, PolicyViolation
from coffer.domain.inventory import (
    EnvironmentPolicy,
    InventoryFields,
    Sensitivity,
    parse_inventory_change,
    parse_policy,
    parse_reminder_days,
    parse_rotation_days,
    parse_sensitivity,
    parse_text,
    policy_violations,
    write_refusal,
)


@pytest.mark.parametrize(
    ("given", "days"),
    [(90, 90), ("90", 90), ("90d", 90), (" 90D ", 90), ("48h", 2), (1, 1), ("3650d", 3650)],
)
def test_rotation_periods_are_whole_days(given: int | str, days: int) -> None:
    """A number of days, or a duration that is a whole number of days, gives those days."""
    assert parse_rotation_days(given) == days


@pytest.mark.parametrize("given", [0, -1, 3651, "3651d", "36h", "90 days", "", True, 1.5, None])
def test_bad_rotation_periods_name_the_field(given: object) -> None:
    """Zero, too long, part days, words, booleans and floats are refused naming the field."""
    with pytest.raises(InvalidInput) as caught:
        parse_rotation_days(given, "max_rotation_days")
    assert caught.value.field == "max_rotation_days"


def test_sensitivity_is_case_insensitive_and_closed() -> None:
    """Any case of the four levels is accepted; anything else is refused naming the field."""
    assert parse_sensitivity(" Confidential ") is Sensitivity.CONFIDENTIAL
    for bad in ("top", "", 3, None):
        with pytest.raises(InvalidInput) as caught:
            parse_sensitivity(bad)
        assert caught.value.field == "sensitivity"
        assert "public, internal, confidential, secret" in caught.value.message


def test_text_fields_have_limits_and_no_control_characters() -> None:
    """Owners stop at 254 characters, systems at 128, descriptions at 1024; control
    characters are refused (a description may hold newlines and tabs); the code point of
    the offending character is named, not echoed."""
    assert parse_text("o" * 254, "owner") == "o" * 254
    assert parse_text("line one\nline\ttwo", "description") == "line one\nline\ttwo"
    for value, field in [
        ("o" * 255, "owner"),
        ("s" * 129, "system"),
        ("d" * 1025, "description"),
        ("a\nb", "owner"),
        ("a\u2028b", "system"),
        ("a\x07b", "description"),
        ("   ", "owner"),
        ("a\ud800", "owner"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            parse_text(value, field)
        assert caught.value.field == field, value
    with pytest.raises(InvalidInput) as caught:
        parse_text("bell\x07", "owner")
    assert "U+0007" in caught.value.message and "\x07" not in caught.value.message


def test_an_inventory_change_sets_clears_and_leaves_the_rest() -> None:
    """Fields sent are set (parsed), null clears, fields not sent stay; the audit metadata
    names the changed fields in display order with their new values."""
    before = InventoryFields(owner="ops", system="db", rotation_days=30)
    change = parse_inventory_change(
        {"rotation_days": "90d", "owner": None, "sensitivity": "SECRET"}
    )
    assert change.applied_to(before) == InventoryFields(
        owner=None, system="db", sensitivity=Sensitivity.SECRET, rotation_days=90
    )
    assert change.audit_fields() == {
        "fields": "owner,sensitivity,rotation_days",
        "owner": None,
        "sensitivity": "secret",
        "rotation_days": 90,
    }


def test_an_unknown_inventory_field_is_named() -> None:
    """An unknown field is refused naming it and listing the fields there are."""
    with pytest.raises(InvalidInput) as caught:
        parse_inventory_change({"owner": "ops", "colour": "blue"})
    assert caught.value.field == "colour"
    assert "owner, system, description, sensitivity, rotation_days" in caught.value.message


def test_policies_parse_required_fields_in_display_order() -> None:
    """Required fields are deduplicated, lower-cased and put in display order; the rotation
    limit takes durations."""
    policy = parse_policy(
        "production",
        required_fields=["Rotation_Days", "owner", "owner"],
        max_rotation_days="90d",
        require_read_reason=True,
        export_approvals=2,
    )
    assert policy == EnvironmentPolicy(
        environment="production",
        required_fields=("owner", "rotation_days"),
        max_rotation_days=90,
        require_read_reason=True,
        export_approvals=2,
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"required_fields": ["owner", "colour"]}, "required_fields"),
        ({"required_fields": [1]}, "required_fields"),
        ({"max_rotation_days": 4000}, "max_rotation_days"),
        ({"require_read_reason": 1}, "require_read_reason"),
        ({"export_approvals": 0}, "export_approvals"),
        ({"export_approvals": "2"}, "export_approvals"),
    ],
)
def test_bad_policies_name_the_field(kwargs: dict[str, object], field: str) -> None:
    """Each bad policy field is refused naming it."""
    with pytest.raises(InvalidInput) as caught:
        parse_policy("production", **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_reminder_days_run_from_zero_to_ninety() -> None:
    """0 and 90 are accepted; 91, -1 and text are refused naming the field."""
    assert parse_reminder_days(0) == 0 and parse_reminder_days(90) == 90
    for bad in (91, -1, "7", True):
        with pytest.raises(InvalidInput):
            parse_reminder_days(bad)


def test_the_refusal_names_every_broken_rule_and_the_fix() -> None:
    """A secret without owner and with a rotation period above the limit gets one
    PolicyViolation naming both rules and the options that fix them; a compliant one none."""
    policy = EnvironmentPolicy("production", required_fields=("owner",), max_rotation_days=90)
    refusal = write_refusal(policy, InventoryFields(rotation_days=365), "db/password")
    assert isinstance(refusal, PolicyViolation)
    assert refusal.field == "owner"
    assert "production requires owner" in refusal.message
    assert "rotation at most every 90 days (rotation_days is 365)" in refusal.message
    assert "--owner --rotate-every" in refusal.message
    compliant = InventoryFields(owner="ops", rotation_days=90)
    assert write_refusal(policy, compliant, "db/password") is None
    assert policy_violations(policy, compliant) == []


def test_spreadsheet_formulas_are_neutralised() -> None:
    """Cells starting with = + - @ (or a tab or carriage return) get a leading quote; other
    text and empty cells are kept."""
    assert spreadsheet_safe('=HYPERLINK("http://evil.test","x")') == (
        '\'=HYPERLINK("http://evil.test","x")'
    )
    for start in ("+", "-", "@", "\t", "\r"):
        assert spreadsheet_safe(f"{start}1+1") == f"'{start}1+1"
    assert spreadsheet_safe("alice@example.com") == "alice@example.com"
    assert spreadsheet_safe(None) == ""
    assert spreadsheet_safe(90) == "90"


def test_inventory_csv_is_rfc_4180_with_a_header_row() -> None:
    """The CSV has a header row, CRLF line ends, quotes fields holding commas, quotes and
    newlines, joins violations with "; ", and reads back to the same (safe) values."""
    entry = {
        "project": "web",
        "environment": "production",
        "key": "db/password",
        "owner": "=cmd|' /C calc'!A0",
        "system": 'billing, "main"',
        "description": "line one\nline two",
        "sensitivity": "secret",
        "rotation_days": 90,
        "current_version": 3,
        "last_rotated": "2026-01-31T18:00:00.000Z",
        "violations": ["production requires owner", "production requires system"],
    }
    text = inventory_csv([entry])
    assert text.startswith(",".join(CSV_COLUMNS) + "\r\n")
    assert text.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CSV_COLUMNS)
    assert dict(zip(rows[0], rows[1], strict=True)) == {
        "project": "web",
        "environment": "production",
        "key": "db/password",
        "owner": "'=cmd|' /C calc'!A0",
        "system": 'billing, "main"',
        "description": "line one\nline two",
        "sensitivity": "secret",
        "rotation_days": "90",
        "current_version": "3",
        "last_rotated": "2026-01-31T18:00:00.000Z",
        "violations": "production requires owner; production requires system",
    }
    assert '"billing, ""main"""' in text
