"""Offboarding a member in one step: what it revoked, the secrets it marked due for rotation
(every secret the member could read at that moment) and the secrets the audit log shows they
did read. The record is evidence, kept after the member's account is gone, so it holds the
member's id and e-mail and the offboarder's id and name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MAX_LISTED = 1000  # secrets listed per record (the counts are always complete)


@dataclass(frozen=True)
class FlaggedSecret:
    """A secret the member could read, now due for rotation from ``version`` on."""

    project: str
    environment: str
    key: str
    version: int


@dataclass(frozen=True)
class ReadSecret:
    """A secret the member read (``secret.read`` entries with them as actor): how often and
    when last."""

    project: str
    environment: str
    key: str
    reads: int
    last_read_at: float


@dataclass(frozen=True)
class OffboardingRecord:
    """One offboarding as kept in ``offboardings`` (``summary`` holds all but the columns).

    ``via`` is ``offboarding`` (``coffer members offboard``) or ``access_review`` (a
    ``revoke`` in campaign ``review_id``). The lists hold at most ``MAX_LISTED`` secrets
    each; the counts are complete."""

    id: str
    user_id: str
    email: str
    role: str
    offboarded_by: str
    offboarded_by_name: str
    offboarded_at: float
    via: str
    review_id: str | None
    sessions_revoked: int
    tokens_revoked: int
    api_keys_revoked: int
    grants_revoked: int
    secrets_flagged: int
    secrets_read: int
    flagged: tuple[FlaggedSecret, ...]
    read: tuple[ReadSecret, ...]

    def summary(self) -> dict[str, Any]:
        """The ``summary`` JSON stored with the record."""
        return {
            "role": self.role,
            "offboarded_by_name": self.offboarded_by_name,
            "via": self.via,
            "review_id": self.review_id,
            "sessions_revoked": self.sessions_revoked,
            "tokens_revoked": self.tokens_revoked,
            "api_keys_revoked": self.api_keys_revoked,
            "grants_revoked": self.grants_revoked,
            "secrets_flagged": self.secrets_flagged,
            "secrets_read": self.secrets_read,
            "flagged": [
                {
                    "project": s.project,
                    "environment": s.environment,
                    "key": s.key,
                    "version": s.version,
                }
                for s in self.flagged
            ],
            "read": [
                {
                    "project": s.project,
                    "environment": s.environment,
                    "key": s.key,
                    "reads": s.reads,
                    "last_read_at": s.last_read_at,
                }
                for s in self.read
            ],
        }

    def audit_metadata(self) -> dict[str, str | int | None]:
        """The metadata of ``member.offboarded``: the e-mail and the counts."""
        return {
            "email": self.email,
            "user_id": self.user_id,
            "via": self.via,
            "review_id": self.review_id,
            "sessions_revoked": self.sessions_revoked,
            "tokens_revoked": self.tokens_revoked,
            "api_keys_revoked": self.api_keys_revoked,
            "grants_revoked": self.grants_revoked,
            "secrets_flagged": self.secrets_flagged,
            "secrets_read": self.secrets_read,
        }

    @classmethod
    def from_row(
        cls,
        *,
        id: str,
        user_id: str,
        email: str,
        offboarded_by: str,
        offboarded_at: float,
        summary: Mapping[str, Any],
    ) -> OffboardingRecord:
        """Reads a stored record back."""
        return cls(
            id=id,
            user_id=user_id,
            email=email,
            role=str(summary.get("role", "")),
            offboarded_by=offboarded_by,
            offboarded_by_name=str(summary.get("offboarded_by_name", "")),
            offboarded_at=offboarded_at,
            via=str(summary.get("via", "offboarding")),
            review_id=summary.get("review_id"),
            sessions_revoked=int(summary.get("sessions_revoked", 0)),
            tokens_revoked=int(summary.get("tokens_revoked", 0)),
            api_keys_revoked=int(summary.get("api_keys_revoked", 0)),
            grants_revoked=int(summary.get("grants_revoked", 0)),
            secrets_flagged=int(summary.get("secrets_flagged", 0)),
            secrets_read=int(summary.get("secrets_read", 0)),
            flagged=_flagged(summary.get("flagged", ())),
            read=_read(summary.get("read", ())),
        )


def _flagged(items: Sequence[Mapping[str, Any]]) -> tuple[FlaggedSecret, ...]:
    return tuple(
        FlaggedSecret(i["project"], i["environment"], i["key"], int(i["version"])) for i in items
    )


def _read(items: Sequence[Mapping[str, Any]]) -> tuple[ReadSecret, ...]:
    return tuple(
        ReadSecret(
            i["project"], i["environment"], i["key"], int(i["reads"]), float(i["last_read_at"])
        )
        for i in items
    )
