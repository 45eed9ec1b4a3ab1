"""The rules of access requests and operation approvals (``domain.access_requests``): what a
reason, a duration, an access level and an operation may be, and how a request or an
approval reads as time passes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coffer.domain.access import AccessLevel
from coffer.domain.access_requests import (
    APPROVAL_VALID_SECONDS,
    PENDING_SECONDS,
    AccessRequest,
    ApprovalStatus,
    Operation,
    OperationApproval,
    Person,
    RequestStatus,
    parse_operation,
    parse_request_duration,
    parse_requested_access,
    parse_status_filter,
    validate_note,
    validate_reason,
)
from coffer.domain.errors import InvalidInput

NOW = 1_800_000_000.0
ALICE = Person("01ALICE0000000000000000000", "alice@acme.test")
BOB = Person("01BOB000000000000000000000", "bob@acme.test")


def _request(**changes: object) -> AccessRequest:
    base = AccessRequest(
        id="01REQUEST00000000000000000",
        org_id="org",
        requester=ALICE,
        requester_kind="user",
        project="web",
        environment="production",
        access=AccessLevel.READ,
        reason="incident 42",
        duration_seconds=3600,
        stored_status=RequestStatus.PENDING,
        created_at=NOW,
        decided_by=None,
        decided_at=None,
        note=None,
        grant_id=None,
        expires_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _approval(**changes: object) -> OperationApproval:
    base = OperationApproval(
        id="01APPROVAL0000000000000000",
        org_id="org",
        operation=Operation.ENV_EXPORT,
        target="web/production",
        reason="quarterly backup",
        requested_by=ALICE,
        stored_status=ApprovalStatus.APPROVED,
        created_at=NOW,
        expires_at=NOW + APPROVAL_VALID_SECONDS,
        decided_by=BOB,
        decided_at=NOW,
        used_at=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_reason_is_kept_without_its_surrounding_blanks() -> None:
    """A reason of ordinary text is returned trimmed, non-ASCII included."""
    assert (
        validate_reason("  rotating the Zürich DB password  ") == "rotating the Zürich DB password"
    )


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * 501, "at most 500 characters"),
        ("line one\nline two", "control characters"),
        ("bell\x07", "control characters"),
        ("line\u2028separator", "control characters"),
        ("lone \ud800 surrogate", "valid Unicode"),
        (42, "text of 1 to 500"),
        (None, "text of 1 to 500"),
    ],
)
def test_a_bad_reason_is_refused_naming_the_field_and_the_rule(text: object, rule: str) -> None:
    """Empty, too long, control characters, lone surrogates and non-text are refused."""
    with pytest.raises(InvalidInput) as refused:
        validate_reason(text)
    assert refused.value.field == "reason"
    assert rule in refused.value.message


def test_a_reason_of_exactly_500_characters_is_accepted() -> None:
    """The limit is inclusive."""
    assert validate_reason("y" * 500) == "y" * 500


def test_a_note_is_optional_to_approve_and_required_to_deny() -> None:
    """No note is fine for an approval; a denial must say why, naming ``note``."""
    assert validate_note(None, required=False) is None
    with pytest.raises(InvalidInput) as refused:
        validate_note(None, required=True)
    assert refused.value.field == "note"
    with pytest.raises(InvalidInput) as bad:
        validate_note("a\tb", required=False)
    assert bad.value.field == "note"


@pytest.mark.parametrize(
    ("text", "seconds"), [("5m", 300), ("8h", 28_800), ("7d", 604_800), ("30d", 2_592_000)]
)
def test_a_duration_is_read_as_people_type_it(text: str, seconds: int) -> None:
    """Minutes, hours and days within 5 minutes to 30 days."""
    assert parse_request_duration(text) == seconds


@pytest.mark.parametrize("text", ["4m", "299", "31d", "2592001", "soon", "", "-1h", True, None])
def test_a_duration_outside_5_minutes_to_30_days_is_refused(text: object) -> None:
    """Too short, too long, malformed and non-text durations name ``duration``."""
    with pytest.raises(InvalidInput) as refused:
        parse_request_duration(text)
    assert refused.value.field == "duration"


def test_access_is_read_or_write_only() -> None:
    """``none`` is no access to ask for; case does not matter."""
    assert parse_requested_access(" WRITE ") is AccessLevel.WRITE
    for text in ("none", "admin", "", None):
        with pytest.raises(InvalidInput) as refused:
            parse_requested_access(text)
        assert refused.value.field == "access"


def test_an_export_approval_names_project_and_environment() -> None:
    """``env.export`` needs ``project/environment``; ``root.rotate`` takes no target."""
    assert parse_operation("env.export", "web/production") == (
        Operation.ENV_EXPORT,
        "web/production",
    )
    assert parse_operation("root.rotate", None) == (Operation.ROOT_ROTATE, None)


@pytest.mark.parametrize(
    ("operation", "target", "field"),
    [
        ("env.delete", "web/production", "operation"),
        (None, None, "operation"),
        ("env.export", None, "target"),
        ("env.export", "web", "target"),
        ("env.export", "web/prod/x", "target"),
        ("env.export", "web/../etc", "target"),
        ("root.rotate", "web/production", "target"),
    ],
)
def test_a_bad_operation_or_target_is_refused(
    operation: object, target: object, field: str
) -> None:
    """Unknown operations, missing or malformed targets, and a target for root.rotate."""
    with pytest.raises(InvalidInput) as refused:
        parse_operation(operation, target)
    assert refused.value.field == field


def test_a_status_filter_is_one_of_the_statuses_or_all() -> None:
    """``all`` and no filter mean every status; anything else unknown names ``status``."""
    assert parse_status_filter("all", RequestStatus) is None
    assert parse_status_filter(None, RequestStatus) is None
    assert parse_status_filter("expired", RequestStatus) is RequestStatus.EXPIRED
    assert parse_status_filter("used", ApprovalStatus) is ApprovalStatus.USED
    with pytest.raises(InvalidInput) as refused:
        parse_status_filter("used", RequestStatus)
    assert refused.value.field == "status"


def test_a_pending_request_expires_after_seven_days() -> None:
    """Pending until the 7th day, expired from then on."""
    request = _request()
    assert request.status_at(NOW + PENDING_SECONDS - 1) is RequestStatus.PENDING
    assert request.status_at(NOW + PENDING_SECONDS) is RequestStatus.EXPIRED


def test_an_approved_request_reads_as_expired_once_its_grant_has() -> None:
    """Approved while the grant runs; expired after; a denial never expires."""
    approved = _request(stored_status=RequestStatus.APPROVED, expires_at=NOW + 3600)
    assert approved.status_at(NOW + 3599) is RequestStatus.APPROVED
    assert approved.status_at(NOW + 3600) is RequestStatus.EXPIRED
    denied = _request(stored_status=RequestStatus.DENIED)
    assert denied.status_at(NOW + 10 * PENDING_SECONDS) is RequestStatus.DENIED


def test_an_approval_is_usable_once_by_its_requester_for_its_operation() -> None:
    """A proper approval is usable; every other case says why not."""
    approval = _approval()
    target = "web/production"
    assert approval.unusable_because(ALICE.id, Operation.ENV_EXPORT, target, NOW) == ""
    assert "someone else" in approval.unusable_because(BOB.id, Operation.ENV_EXPORT, target, NOW)
    assert "is for env.export of web/production" in approval.unusable_because(
        ALICE.id, Operation.ENV_EXPORT, "web/staging", NOW
    )
    assert "root.rotate" not in approval.unusable_because(
        ALICE.id, Operation.ROOT_ROTATE, None, NOW
    )
    assert approval.unusable_because(ALICE.id, Operation.ROOT_ROTATE, None, NOW)
    late = NOW + APPROVAL_VALID_SECONDS
    assert "expired" in approval.unusable_because(ALICE.id, Operation.ENV_EXPORT, target, late)
    used = _approval(stored_status=ApprovalStatus.USED, used_at=NOW)
    assert "used" in used.unusable_because(ALICE.id, Operation.ENV_EXPORT, target, NOW)
    pending = _approval(stored_status=ApprovalStatus.PENDING, decided_by=None)
    assert "pending" in pending.unusable_because(ALICE.id, Operation.ENV_EXPORT, target, NOW)


def test_an_approval_its_requester_approved_is_never_usable() -> None:
    """Even a row that says approved is refused when its decider is its requester."""
    own = _approval(decided_by=ALICE)
    reason = own.unusable_because(ALICE.id, Operation.ENV_EXPORT, "web/production", NOW)
    assert "second person" in reason


def test_the_operator_may_use_a_root_approval_asked_for_by_anyone() -> None:
    """The operator rotating the root key has no identity: the requester is not checked."""
    root = _approval(operation=Operation.ROOT_ROTATE, target=None)
    assert root.unusable_because(None, Operation.ROOT_ROTATE, None, NOW) == ""
