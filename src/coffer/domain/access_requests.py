"""Access requests and second approvals (separation of duties): their states and the rules
their input must follow. Pure: no I/O.

* An **access request** asks for ``read`` or ``write`` access to a project (``environment``
  None) or one environment, for a reason and a duration (5 minutes to 30 days). An admin who
  is not the requester approves it (a grant that expires by itself at approval + duration)
  or denies it; the requester may cancel it while it is pending. A pending request older
  than 7 days, and an approved one whose grant has expired, read as ``expired``.
* An **operation approval** lets one person do what a policy says needs two: exporting a
  whole environment (``env.export`` of ``project/environment``) or rotating the root key
  (``root.rotate``). The requester asks, another admin approves, and the approval may then
  be used once within 24 hours.
* A **reason** (for a request, an approval, or a read that a policy says must state one)
  is 1 to 500 characters of text without control characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from coffer.domain.access import AccessLevel
from coffer.domain.durations import parse_duration
from coffer.domain.errors import InvalidInput
from coffer.domain.names import validate_resource_name

MAX_REASON_LENGTH = 500
MIN_REQUEST_SECONDS = 5 * 60
MAX_REQUEST_SECONDS = 30 * 86400
PENDING_SECONDS = 7 * 86400  # a request or approval nobody decided on expires after this
APPROVAL_VALID_SECONDS = 24 * 3600  # an approval granted must be used within this

# Control characters (C0, DEL, C1) and the Unicode line and paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A request's or approval's id: a ULID, 26 characters of Crockford base32.
_RECORD_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_ALL = "all"


class RequestStatus(StrEnum):
    """Where an access request stands, as a reader sees it now."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class ApprovalStatus(StrEnum):
    """Where an operation approval stands, as a reader sees it now."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    USED = "used"
    EXPIRED = "expired"


class Operation(StrEnum):
    """An operation that a policy can make need a second person."""

    ENV_EXPORT = "env.export"  # target: project/environment
    ROOT_ROTATE = "root.rotate"  # no target: the vault's root key


def validate_reason(text: object, *, field: str = "reason") -> str:
    """Returns ``text`` without surrounding blanks when it is 1 to 500 characters of valid
    Unicode text without control characters; raises InvalidInput naming ``field``."""
    if not isinstance(text, str):
        raise InvalidInput(
            f"{field} must be text of 1 to {MAX_REASON_LENGTH} characters", field=field
        )
    stripped = text.strip()
    if not stripped:
        raise InvalidInput(f"{field} must not be empty: say why", field=field)
    if len(stripped) > MAX_REASON_LENGTH:
        raise InvalidInput(
            f"{field} must be at most {MAX_REASON_LENGTH} characters (it has {len(stripped)})",
            field=field,
        )
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(
            f"{field} must be valid Unicode text (it contains a lone surrogate)", field=field
        ) from None
    if _CONTROL.search(stripped):
        raise InvalidInput(
            f"{field} must not contain control characters or line breaks", field=field
        )
    return stripped


def validate_record_id(text: object, *, field: str, what: str) -> str:
    """Returns the id of a request or approval (``what``), upper-cased; raises InvalidInput
    naming ``field`` unless it is 26 characters of Crockford base32."""
    normalized = text.strip().upper() if isinstance(text, str) else ""
    if not _RECORD_ID.fullmatch(normalized):
        raise InvalidInput(f"{field} must be {what} id (26 characters)", field=field)
    return normalized


def validate_note(text: object, *, required: bool) -> str | None:
    """Returns a decision's note (the rules of ``validate_reason``, field ``note``); None
    when absent and not ``required``. Raises InvalidInput naming ``note``."""
    if text is None and not required:
        return None
    if text is None:
        raise InvalidInput("note is required: say why", field="note")
    return validate_reason(text, field="note")


def parse_request_duration(text: object) -> int:
    """Returns the seconds of a request's duration (``8h``, ``7d``, or seconds), 5 minutes
    to 30 days; raises InvalidInput naming ``duration``."""
    if not isinstance(text, str | int) or isinstance(text, bool):
        raise InvalidInput("duration must be a duration such as 30m, 8h or 7d", field="duration")
    return parse_duration(
        text, field="duration", minimum=MIN_REQUEST_SECONDS, maximum=MAX_REQUEST_SECONDS
    )


def parse_requested_access(text: object) -> AccessLevel:
    """Returns ``read`` or ``write`` (any case); raises InvalidInput naming ``access``."""
    normalized = text.strip().casefold() if isinstance(text, str) else ""
    if normalized not in (AccessLevel.READ.value, AccessLevel.WRITE.value):
        raise InvalidInput("access must be read or write", field="access")
    return AccessLevel(normalized)


def parse_operation(operation: object, target: object) -> tuple[Operation, str | None]:
    """Returns the operation and its target: ``env.export`` needs ``project/environment``
    (both valid names), ``root.rotate`` takes none. Raises InvalidInput naming
    ``operation`` or ``target``."""
    names = ", ".join(op.value for op in Operation)
    if not isinstance(operation, str) or operation.strip() not in {op.value for op in Operation}:
        raise InvalidInput(f"operation must be one of {names}", field="operation")
    op = Operation(operation.strip())
    if op is Operation.ROOT_ROTATE:
        if target not in (None, ""):
            raise InvalidInput("root.rotate takes no target", field="target")
        return op, None
    if not isinstance(target, str) or target.count("/") != 1:
        raise InvalidInput(
            "target must be project/environment for env.export (e.g. web/production)",
            field="target",
        )
    project, environment = target.split("/")
    validate_resource_name(project, field="target")
    validate_resource_name(environment, field="target")
    return op, f"{project}/{environment}"


def parse_status_filter(text: object, statuses: type[StrEnum]) -> StrEnum | None:
    """Returns the status ``text`` names, or None for ``all`` (or no filter); raises
    InvalidInput naming ``status``."""
    if text is None or text == _ALL:
        return None
    allowed = [status.value for status in statuses]
    if not isinstance(text, str) or text not in allowed:
        raise InvalidInput(f"status must be one of {', '.join(allowed)}, all", field="status")
    return statuses(text)


def own_decision_refusal(what: str) -> str:
    """The message refusing a decision on ``what`` (a request, an approval) by the person
    who asked for it: someone else must decide it (separation of duties)."""
    return (
        f"you asked for this {what} yourself: another admin must approve or deny it "
        "(nothing was changed)"
    )


@dataclass(frozen=True)
class Person:
    """Someone named in a request: their identity id and, while they exist, e-mail/name."""

    id: str
    name: str | None


@dataclass(frozen=True)
class AccessRequest:
    """One access request as stored; ``status_at`` tells how it reads at a moment."""

    id: str
    org_id: str
    requester: Person
    requester_kind: str
    project: str
    environment: str | None
    access: AccessLevel
    reason: str
    duration_seconds: int
    stored_status: RequestStatus
    created_at: float
    decided_by: Person | None
    decided_at: float | None
    note: str | None
    grant_id: str | None
    expires_at: float | None

    @property
    def target(self) -> str:
        """``project`` or ``project/environment``."""
        return self.project if self.environment is None else f"{self.project}/{self.environment}"

    def status_at(self, now: float) -> RequestStatus:
        """Pending past 7 days, or approved past its grant's expiry, reads as expired."""
        if self.stored_status is RequestStatus.PENDING and now >= self.created_at + PENDING_SECONDS:
            return RequestStatus.EXPIRED
        if (
            self.stored_status is RequestStatus.APPROVED
            and self.expires_at is not None
            and now >= self.expires_at
        ):
            return RequestStatus.EXPIRED
        return self.stored_status


@dataclass(frozen=True)
class OperationApproval:
    """One operation approval as stored; ``status_at`` tells how it reads at a moment.
    ``expires_at`` is the end of its pending time, then (once approved) of its validity."""

    id: str
    org_id: str
    operation: Operation
    target: str | None
    reason: str
    requested_by: Person
    stored_status: ApprovalStatus
    created_at: float
    expires_at: float
    decided_by: Person | None
    decided_at: float | None
    used_at: float | None

    def status_at(self, now: float) -> ApprovalStatus:
        """Pending or approved past ``expires_at`` reads as expired."""
        if (
            self.stored_status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED)
            and now >= self.expires_at
        ):
            return ApprovalStatus.EXPIRED
        return self.stored_status

    def unusable_because(
        self, identity_id: str | None, operation: Operation, target: str | None, now: float
    ) -> str:
        """Returns why this approval cannot be used by ``identity_id`` for ``operation`` on
        ``target`` now, or "" when it can: approved by someone other than its requester,
        unused, unexpired, for the same operation and target, and asked for by this identity
        (``identity_id`` None: the operator on the vault's machine, who has no identity)."""
        if self.operation is not operation or self.target != target:
            what = self.operation.value + (f" of {self.target}" if self.target else "")
            return f"approval {self.id} is for {what}"
        if identity_id is not None and self.requested_by.id != identity_id:
            return f"approval {self.id} was asked for by someone else"
        status = self.status_at(now)
        if status is not ApprovalStatus.APPROVED:
            return f"approval {self.id} is {status.value}, not approved"
        if self.decided_by is None or self.decided_by.id == self.requested_by.id:
            return f"approval {self.id} was not approved by a second person"
        return ""
