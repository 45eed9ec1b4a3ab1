"""Access review campaigns: every identity of an organization with its access and last use,
kept or revoked line by line, then signed off as evidence.

* A campaign **snapshots** every person (e-mail, role, MFA, grants) and every machine
  identity (name, grants, allowed IPs, validity window) when it starts, each with its last
  use. Later changes to the team do not change the lines; deciding a line acts on the
  identity as it is now.
* Each line gets a **decision**: ``keep``, or ``revoke`` (which takes effect at once: a
  person is offboarded, a machine deleted). Nobody decides their own line. A line kept may
  be decided again while the campaign is open; a revocation is final. An identity removed
  since the campaign started can no longer be kept: its line takes ``revoke``, recorded as
  ``already_removed`` with nothing else changed.
* **Sign-off** needs every line decided; it fixes the campaign for good and records the
  SHA-256 ``digest`` of its canonical JSON (``canonical_review``), also written to the audit
  log, so the evidence can be checked against the verifiable log.

Everything here is pure: parsing, the records, and the canonical form.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

from coffer.domain.errors import InvalidInput, InvalidQuery
from coffer.domain.names import display_name

MAX_REVIEW_NAME = 128
MAX_NOTE = 500
DAY = 86400.0


class ReviewStatus(StrEnum):
    """Where a campaign stands."""

    OPEN = "open"
    SIGNED_OFF = "signed_off"


class ReviewDecision(StrEnum):
    """What a reviewer decided for one line."""

    KEEP = "keep"
    REVOKE = "revoke"


class DecisionEffect(StrEnum):
    """What deciding a line did."""

    KEPT = "kept"
    OFFBOARDED = "offboarded"  # a person: sessions, tokens, keys, grants, membership gone
    MACHINE_DELETED = "machine_deleted"  # a machine: deleted, its tokens revoked
    ALREADY_REMOVED = "already_removed"  # revoke of an identity gone since the start


class IdentityKind(StrEnum):
    """The kinds of identity a campaign lists."""

    USER = "user"
    MACHINE = "machine"


def _printable_text(text: object, *, field: str, limit: int, required: bool) -> str:
    if not isinstance(text, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    cleaned = text.strip()
    if required and not cleaned:
        raise InvalidInput(f"{field} must not be empty", field=field)
    if len(cleaned) > limit:
        raise InvalidInput(
            f"{field} is {len(cleaned)} characters long; the limit is {limit}", field=field
        )
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in cleaned):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return cleaned


def validate_review_name(text: object) -> str:
    """Returns the campaign name trimmed; raises InvalidInput naming ``name`` when it is
    empty, longer than 128 characters or holds control characters."""
    return _printable_text(text, field="name", limit=MAX_REVIEW_NAME, required=True)


def validate_note(text: object | None) -> str | None:
    """Returns a decision's note trimmed (None when absent or blank); raises InvalidInput
    naming ``note`` when longer than 500 characters or holding control characters."""
    if text is None:
        return None
    return _printable_text(text, field="note", limit=MAX_NOTE, required=False) or None


def parse_decision(text: object) -> ReviewDecision:
    """Returns ``keep`` or ``revoke`` (any case); raises InvalidInput naming ``decision``."""
    normalized = text.strip().casefold() if isinstance(text, str) else ""
    if normalized not in {d.value for d in ReviewDecision}:
        raise InvalidInput("decision must be keep or revoke", field="decision")
    return ReviewDecision(normalized)


def parse_moment(text: str, *, field: str, end_of_day: bool = False) -> float:
    """Returns the Unix time of ``text``: a date (``2026-03-31``: its start, or with
    ``end_of_day`` its last microsecond, UTC) or an ISO 8601 time (UTC unless it has an
    offset). Raises InvalidInput naming ``field``."""
    cleaned = text.strip() if isinstance(text, str) else ""
    try:
        if len(cleaned) == 10:
            day = date.fromisoformat(cleaned)
            start = datetime.combine(day, time(0), tzinfo=UTC).timestamp()
            return start + DAY - 1e-6 if end_of_day else start
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise InvalidInput(
            f"{field} must be a date (2026-03-31) or an ISO 8601 time (2026-03-31T18:00:00Z)",
            field=field,
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def parse_due(text: str | None, now: float) -> float | None:
    """Returns a campaign's due time: None when absent; a date means the end of that day
    (UTC). Raises InvalidInput naming ``due`` when it does not parse or is already past."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    due = parse_moment(text, field="due", end_of_day=True)
    if due <= now:
        raise InvalidInput("due must be in the future", field="due")
    return due


@dataclass(frozen=True)
class Period:
    """An inclusive time range; an open end is None."""

    start: float | None = None
    end: float | None = None


def parse_period(start: str | None, end: str | None) -> Period:
    """Returns the period of query parameters ``from`` and ``to`` (dates or ISO 8601 times;
    a ``to`` date includes its whole day). Raises InvalidQuery naming the parameter when one
    does not parse or ``to`` comes before ``from``."""
    try:
        first = parse_moment(start, field="from") if start else None
        last = parse_moment(end, field="to", end_of_day=True) if end else None
    except InvalidInput as exc:
        raise InvalidQuery(exc.message, field=exc.field) from None
    if first is not None and last is not None and last < first:
        raise InvalidQuery("to must not be earlier than from", field="to")
    return Period(first, last)


@dataclass(frozen=True)
class ReviewGrant:
    """One grant of an identity when the campaign started."""

    project: str
    environment: str | None
    access: str
    expires_at: float | None

    def to_json(self) -> dict[str, Any]:
        """The stored and canonical form."""
        return {
            "project": self.project,
            "environment": self.environment,
            "access": self.access,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True)
class IdentityAccess:
    """What an identity could do when the campaign started, beyond its role: its grants,
    and for a machine its allowed addresses and validity window; for a person whether MFA
    was on (None for a machine)."""

    grants: tuple[ReviewGrant, ...] = ()
    allowed_ips: tuple[str, ...] = ()
    valid_after: float | None = None
    valid_before: float | None = None
    mfa_enabled: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The form stored in ``access_review_items.access`` (and in the canonical JSON)."""
        return {
            "grants": [grant.to_json() for grant in self.grants],
            "allowed_ips": list(self.allowed_ips),
            "valid_after": self.valid_after,
            "valid_before": self.valid_before,
            "mfa_enabled": self.mfa_enabled,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> IdentityAccess:
        """Reads the stored form back."""
        return cls(
            grants=tuple(
                ReviewGrant(g["project"], g["environment"], g["access"], g["expires_at"])
                for g in data.get("grants", ())
            ),
            allowed_ips=tuple(data.get("allowed_ips", ())),
            valid_after=data.get("valid_after"),
            valid_before=data.get("valid_before"),
            mfa_enabled=data.get("mfa_enabled"),
        )


@dataclass(frozen=True)
class ReviewItem:
    """One line of a campaign: an identity as it was at the start, and its decision."""

    identity_id: str
    identity_kind: IdentityKind
    identity_name: str
    role: str | None
    access: IdentityAccess
    last_used_at: float | None
    decision: ReviewDecision | None = None
    decided_by: str | None = None
    decided_at: float | None = None
    note: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The line in the canonical JSON."""
        return {
            "identity_id": self.identity_id,
            "identity_kind": self.identity_kind.value,
            "identity_name": self.identity_name,
            "role": self.role,
            "access": self.access.to_json(),
            "last_used_at": self.last_used_at,
            "decision": self.decision.value if self.decision else None,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "note": self.note,
        }


@dataclass(frozen=True)
class AccessReview:
    """A campaign's own record (its lines are ``ReviewItem``)."""

    id: str
    org_id: str
    name: str
    status: ReviewStatus
    created_by: str
    created_at: float
    due_at: float | None
    signed_off_by: str | None = None
    signed_off_at: float | None = None
    digest: str | None = None

    def canonical(self) -> dict[str, Any]:
        """The campaign in the canonical JSON (the digest itself left out)."""
        return {
            "id": self.id,
            "org_id": self.org_id,
            "name": self.name,
            "status": self.status.value,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "due_at": self.due_at,
            "signed_off_by": self.signed_off_by,
            "signed_off_at": self.signed_off_at,
        }


@dataclass(frozen=True)
class ReviewCounts:
    """How many lines a campaign has, and how many were kept or revoked."""

    total: int
    kept: int
    revoked: int

    @property
    def undecided(self) -> int:
        """Lines still without a decision."""
        return self.total - self.kept - self.revoked


def count_items(items: Iterable[ReviewItem]) -> ReviewCounts:
    """Counts the lines and their decisions."""
    lines = list(items)
    kept = sum(1 for item in lines if item.decision is ReviewDecision.KEEP)
    revoked = sum(1 for item in lines if item.decision is ReviewDecision.REVOKE)
    return ReviewCounts(len(lines), kept, revoked)


def canonical_review(review: AccessReview, items: Sequence[ReviewItem]) -> bytes:
    """Returns the canonical JSON of a campaign: ``{"review": ..., "items": [...]}`` with the
    lines ordered by identity id, keys sorted, no whitespace, ASCII only (non-ASCII as
    ``\\uXXXX``), times as the stored Unix seconds. Its SHA-256 is the campaign's digest."""
    document = {
        "review": review.canonical(),
        "items": [item.canonical() for item in sorted(items, key=lambda i: i.identity_id)],
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def review_digest(review: AccessReview, items: Sequence[ReviewItem]) -> str:
    """Returns the hex SHA-256 of ``canonical_review``."""
    return hashlib.sha256(canonical_review(review, items)).hexdigest()


def find_item(items: Iterable[ReviewItem], reference: str) -> ReviewItem | None:
    """Returns the line whose identity id is ``reference``, else whose e-mail or machine name
    is ``reference`` (e-mails in any case); None when there is none."""
    wanted = reference.strip()
    lines = list(items)
    for item in lines:
        if item.identity_id == wanted:
            return item
    folded = unicodedata.normalize("NFKC", wanted).casefold()
    for item in lines:
        name = item.identity_name
        if name == wanted or (item.identity_kind is IdentityKind.USER and name == folded):
            return item
    return None


def describe(item: ReviewItem) -> str:
    """``person "ann@acme.test"`` or ``machine "ci"``, safe for a message."""
    kind = "person" if item.identity_kind is IdentityKind.USER else "machine"
    return f"{kind} {display_name(item.identity_name)}"
