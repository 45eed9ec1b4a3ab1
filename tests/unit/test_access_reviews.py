"""The pure rules of access reviews and offboarding records (coffer.domain.access_reviews and
coffer.domain.offboarding): parsing what people type, finding a line, and the canonical JSON
whose SHA-256 is a signed-off review's digest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.domain.access_reviews import (
    AccessReview,
    IdentityAccess,
    IdentityKind,
    ReviewDecision,
    ReviewGrant,
    ReviewItem,
    ReviewStatus,
    canonical_review,
    count_items,
    find_item,
    parse_decision,
    parse_due,
    parse_period,
    review_digest,
    validate_note,
    validate_review_name,
)
from coffer.domain.errors import InvalidInput, InvalidQuery
from coffer.domain.offboarding import FlaggedSecret, OffboardingRecord, ReadSecret

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()

REVIEW = AccessReview(
    id="01REVIEW",
    org_id="01ORG",
    name="Q1 2026",
    status=ReviewStatus.SIGNED_OFF,
    created_by="01ADMIN",
    created_at=NOW,
    due_at=None,
    signed_off_by="01ADMIN",
    signed_off_at=NOW + 60.5,
)
ANN = ReviewItem(
    identity_id="01ANN",
    identity_kind=IdentityKind.USER,
    identity_name="ann@acme.test",
    role="viewer",
    access=IdentityAccess(
        grants=(ReviewGrant("app", "production", "none", None),), mfa_enabled=True
    ),
    last_used_at=NOW - 3600.25,
    decision=ReviewDecision.KEEP,
    decided_by="01ADMIN",
    decided_at=NOW + 30,
    note="still on the team",
)
CI = ReviewItem(
    identity_id="01CI",
    identity_kind=IdentityKind.MACHINE,
    identity_name="ci",
    role=None,
    access=IdentityAccess(
        grants=(ReviewGrant("app", None, "read", NOW + 86400),),
        allowed_ips=("10.0.0.0/8",),
        valid_before=NOW + 7 * 86400,
    ),
    last_used_at=None,
    decision=ReviewDecision.REVOKE,
    decided_by="01ADMIN",
    decided_at=NOW + 40,
)


def test_decision_is_keep_or_revoke_in_any_case() -> None:
    """``KEEP`` and `` revoke `` are understood; anything else is refused naming the field."""
    assert parse_decision("KEEP") is ReviewDecision.KEEP
    assert parse_decision(" revoke ") is ReviewDecision.REVOKE
    for bad in ("remove", "", None, 1):
        with pytest.raises(InvalidInput) as caught:
            parse_decision(bad)
        assert caught.value.field == "decision"
        assert "keep or revoke" in caught.value.message


def test_review_name_and_note_rules_name_their_field() -> None:
    """A name must be 1 to 128 printable characters, a note at most 500; blank notes are
    None; control characters are refused in both."""
    assert validate_review_name("  Q1 2026 ") == "Q1 2026"
    assert validate_note("  ") is None and validate_note(None) is None
    cases = [
        (validate_review_name, "", "name", "must not be empty"),
        (validate_review_name, "x" * 129, "name", "the limit is 128"),
        (validate_review_name, "Q1\x1b[31m", "name", "control characters"),
        (validate_note, "n" * 501, "note", "the limit is 500"),
        (validate_note, "ok\u2028then", "note", "control characters"),
    ]
    for check, text, field, rule in cases:
        with pytest.raises(InvalidInput) as caught:
            check(text)
        assert caught.value.field == field and rule in caught.value.message


def test_due_date_means_the_end_of_that_day_and_must_lie_ahead() -> None:
    """``2026-03-31`` is due at its last moment (UTC); a time with an offset is honoured; a
    past date or a date that does not parse is refused naming ``due``."""
    end_of_march = datetime(2026, 4, 1, tzinfo=UTC).timestamp() - 1e-6
    assert parse_due("2026-03-31", NOW) == pytest.approx(end_of_march)
    assert parse_due("2026-03-02T09:00:00+02:00", NOW) == (
        datetime(2026, 3, 2, 7, 0, tzinfo=UTC).timestamp()
    )
    assert parse_due(None, NOW) is None and parse_due(" ", NOW) is None
    for bad, rule in (("2026-02-28", "in the future"), ("31/03/2026", "must be a date")):
        with pytest.raises(InvalidInput) as caught:
            parse_due(bad, NOW)
        assert caught.value.field == "due" and rule in caught.value.message


def test_period_includes_the_whole_last_day_and_refuses_running_backwards() -> None:
    """``to`` as a date covers its whole day; ``to`` before ``from`` and unparsable bounds
    are InvalidQuery naming the parameter."""
    period = parse_period("2026-01-01", "2026-01-31")
    assert period.start == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert period.end is not None
    assert datetime(2026, 1, 31, 23, 59, 59, tzinfo=UTC).timestamp() < period.end
    assert period.end < datetime(2026, 2, 1, tzinfo=UTC).timestamp()
    assert parse_period(None, None).start is None
    for start, end, field in (("2026-02-01", "2026-01-01", "to"), ("yesterday", None, "from")):
        with pytest.raises(InvalidQuery) as caught:
            parse_period(start, end)
        assert caught.value.field == field


def test_a_line_is_found_by_id_email_in_any_case_or_machine_name() -> None:
    """The id, the e-mail (case-folded) and the machine name each find their line; a name
    of another kind or an unknown one finds nothing."""
    items = [ANN, CI]
    assert find_item(items, "01CI") is CI
    assert find_item(items, " ANN@acme.test ") is ANN
    assert find_item(items, "ci") is CI
    assert find_item(items, "CI") is None
    assert find_item(items, "bob@acme.test") is None


def test_counts_tell_decided_from_undecided_lines() -> None:
    """Kept, revoked and undecided lines are counted apart."""
    counts = count_items([ANN, CI, replace(CI, identity_id="01X", decision=None)])
    assert (counts.total, counts.kept, counts.revoked, counts.undecided) == (3, 1, 1, 1)


def test_canonical_json_is_sorted_compact_ascii_and_order_free() -> None:
    """The canonical form does not depend on the order of the lines, sorts keys, has no
    whitespace, escapes non-ASCII, and its SHA-256 is the digest."""
    unicode_item = replace(ANN, note="toujours là")
    one = canonical_review(REVIEW, [unicode_item, CI])
    assert one == canonical_review(REVIEW, [CI, unicode_item])
    assert one.isascii() and b'", "' not in one and b'": ' not in one
    assert b"toujours l\\u00e0" in one
    parsed = json.loads(one)
    assert [line["identity_id"] for line in parsed["items"]] == ["01ANN", "01CI"]
    assert parsed["items"][0]["note"] == "toujours là"
    assert parsed["review"]["signed_off_at"] == NOW + 60.5
    assert one == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    assert review_digest(REVIEW, [unicode_item, CI]) == hashlib.sha256(one).hexdigest()


@given(
    field=st.sampled_from(["decision", "note", "last_used_at", "role", "identity_name"]),
)
def test_any_change_to_a_line_changes_the_digest(field: str) -> None:
    """Changing one decision, note, last use, role or name gives another digest."""
    changed = {
        "decision": ReviewDecision.REVOKE,
        "note": "edited later",
        "last_used_at": NOW,
        "role": "admin",
        "identity_name": "mallory@acme.test",
    }[field]
    assert review_digest(REVIEW, [ANN, CI]) != review_digest(
        REVIEW, [replace(ANN, **{field: changed}), CI]
    )


def test_stored_access_reads_back_equal() -> None:
    """The JSON stored for an identity's access reads back to the same record."""
    for item in (ANN, CI):
        assert IdentityAccess.from_json(json.loads(json.dumps(item.access.to_json()))) == (
            item.access
        )


def test_offboarding_summary_reads_back_equal() -> None:
    """An offboarding record stored as its summary JSON reads back to the same record, and
    its audit metadata holds the e-mail and the counts, not the lists."""
    record = OffboardingRecord(
        id="01OFF",
        user_id="01ANN",
        email="ann@acme.test",
        role="viewer",
        offboarded_by="01ADMIN",
        offboarded_by_name="admin@acme.test",
        offboarded_at=NOW,
        via="offboarding",
        review_id=None,
        sessions_revoked=1,
        tokens_revoked=2,
        api_keys_revoked=3,
        grants_revoked=1,
        secrets_flagged=2,
        secrets_read=1,
        flagged=(FlaggedSecret("app", "staging", "A", 1), FlaggedSecret("app", "dev", "B", 4)),
        read=(ReadSecret("app", "staging", "A", 3, NOW - 5),),
    )
    stored = json.loads(json.dumps(record.summary()))
    again = OffboardingRecord.from_row(
        id=record.id,
        user_id=record.user_id,
        email=record.email,
        offboarded_by=record.offboarded_by,
        offboarded_at=record.offboarded_at,
        summary=stored,
    )
    assert again == record
    metadata = record.audit_metadata()
    assert metadata["email"] == "ann@acme.test" and metadata["secrets_flagged"] == 2
    assert "flagged" not in metadata and "read" not in metadata
