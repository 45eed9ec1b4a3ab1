"""Time to live and read limits: the rules a limited secret lives by.

Any secret of a project environment, and every standalone ephemeral secret or share, may
carry a time to live and a maximum number of reads.

* At ``expires_at`` the secret is gone: unreadable at once, destroyed when next touched
  (``secret.expired``) or by the pruner (``secret.pruned``).
* Each successful read counts one. The read that reaches ``max_reads`` is the last: the
  secret is then **burned** (destroyed, ``secret.burned``) or, when created with
  ``delete=false``, **sealed** (kept, unreadable until someone who may write it resets it).
* A burned or expired secret is indistinguishable from one that never existed.

The counting itself is one conditional update in the database (see
``storage.read_limits``), which is what makes ``max_reads = N`` exact under any concurrency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coffer.domain.durations import parse_duration
from coffer.domain.errors import InvalidInput

MAX_TTL_SECONDS = 365 * 86_400
MAX_READS = 1_000_000


class LimitStatus(StrEnum):
    """The state of a secret that still exists."""

    ACTIVE = "active"
    SEALED = "sealed"


@dataclass(frozen=True)
class ReadLimits:
    """What a write asks for: a time to live, a read limit, and whether the last read burns
    the secret (``burn``, the API's ``delete``) or seals it."""

    ttl_seconds: int | None = None
    max_reads: int | None = None
    burn: bool = True

    @property
    def limited(self) -> bool:
        """True when the secret has a TTL or a read limit."""
        return self.ttl_seconds is not None or self.max_reads is not None

    def state_from(self, now: float) -> LimitState:
        """The state of a secret given these limits at ``now``, before any read."""
        return LimitState(
            expires_at=None if self.ttl_seconds is None else now + self.ttl_seconds,
            max_reads=self.max_reads,
            burn=self.burn,
        )

    def audit_fields(self) -> dict[str, str | int | None]:
        """The limits as ``secret.created``/``secret.updated`` metadata records them."""
        fields: dict[str, str | int | None] = {
            "ttl_seconds": self.ttl_seconds,
            "max_reads": self.max_reads,
        }
        if not self.burn:
            fields["on_last_read"] = "seal"
        return fields


def parse_max_reads(value: object, *, field: str = "max_reads") -> int:
    """Returns ``value`` as a read limit; raises InvalidInput naming ``field`` unless it is
    a whole number from 1 to ``MAX_READS``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be a whole number of reads", field=field)
    if value < 1:
        raise InvalidInput(f"{field} must be at least 1", field=field)
    if value > MAX_READS:
        raise InvalidInput(f"{field} must be at most {MAX_READS:,}", field=field)
    return value


def parse_ttl(value: str | int, *, field: str = "ttl_seconds") -> int:
    """Returns a time to live in seconds from ``3600`` or ``30s``/``5m``/``2h``/``7d``; raises
    InvalidInput naming ``field`` when it does not parse or lies outside 1 s .. 365 days."""
    return parse_duration(value, field=field, minimum=1, maximum=MAX_TTL_SECONDS)


def parse_read_limits(
    *, ttl: str | int | None = None, max_reads: object = None, delete: bool = True
) -> ReadLimits:
    """Returns the validated limits of a write; raises InvalidInput naming ``ttl_seconds``,
    ``max_reads`` or ``delete`` for a value that breaks its rule (``delete=false`` means
    nothing without a read limit, so it is refused rather than ignored)."""
    if not delete and max_reads is None:
        raise InvalidInput("delete=false (seal instead of burn) needs max_reads", field="delete")
    return ReadLimits(
        ttl_seconds=None if ttl is None else parse_ttl(ttl),
        max_reads=None if max_reads is None else parse_max_reads(max_reads),
        burn=delete,
    )


@dataclass(frozen=True)
class LimitState:
    """A secret's limits and counters as stored."""

    expires_at: float | None = None
    max_reads: int | None = None
    read_count: int = 0
    burn: bool = True
    sealed_at: float | None = None

    @property
    def limited(self) -> bool:
        """True when reads must be counted or the clock checked."""
        return self.expires_at is not None or self.max_reads is not None

    def expired(self, now: float) -> bool:
        """True from ``expires_at`` on."""
        return self.expires_at is not None and now >= self.expires_at

    @property
    def status(self) -> LimitStatus:
        """Sealed once the last read of a ``delete=false`` secret happened."""
        return LimitStatus.SEALED if self.sealed_at is not None else LimitStatus.ACTIVE

    @property
    def reads_remaining(self) -> int | None:
        """Reads left before the limit (None without one; 0 while sealed, as only a reset
        unseals)."""
        if self.max_reads is None:
            return None
        if self.sealed_at is not None:
            return 0
        return max(0, self.max_reads - self.read_count)

    def describe(self) -> dict[str, str | int | float | bool | None]:
        """The limits as the API and CLI show them."""
        return {
            "status": self.status.value,
            "read_count": self.read_count,
            "max_reads": self.max_reads,
            "reads_remaining": self.reads_remaining,
            "expires_at": self.expires_at,
            "delete": self.burn,
        }


NO_LIMITS = LimitState()  # an ordinary secret: no TTL, no read limit, nothing counted

_CHANGE_FIELDS = ("ttl_seconds", "max_reads", "delete", "reset")


@dataclass(frozen=True)
class LimitChange:
    """A change to an existing secret's limits (``PATCH``). Each given field replaces the
    stored one: ``ttl_seconds`` restarts the clock from now, ``max_reads`` sets the limit,
    ``None`` in either removes it; ``burn`` picks burn or seal; ``reset`` zeroes the read
    count and unseals a sealed secret. Removing the read limit also clears the count and any
    seal, so a limit put back later counts from zero."""

    values: Mapping[str, Any]
    reset: bool = False

    @property
    def removes_ttl(self) -> bool:
        """True when the change takes the TTL away (``ttl_seconds: null``)."""
        return "ttl_seconds" in self.values and self.values["ttl_seconds"] is None

    def column_values(self, now: float) -> dict[str, Any]:
        """The stored columns this change sets, as of ``now``."""
        columns: dict[str, Any] = {}
        if "ttl_seconds" in self.values:
            ttl = self.values["ttl_seconds"]
            columns["expires_at"] = None if ttl is None else now + ttl
        if "max_reads" in self.values:
            columns["max_reads"] = self.values["max_reads"]
            if self.values["max_reads"] is None:  # no limit left: nothing counted, nothing sealed
                columns["read_count"] = 0
                columns["sealed_at"] = None
        if "burn" in self.values:
            columns["burn"] = self.values["burn"]
        if self.reset:
            columns["read_count"] = 0
            columns["sealed_at"] = None
        return columns

    def applied_to(self, state: LimitState, now: float) -> LimitState:
        """The state after this change; raises InvalidInput naming ``max_reads`` when the
        new limit is not above the reads already counted (the secret could never be read
        again yet would not be burned or sealed)."""
        columns = self.column_values(now)
        after = LimitState(
            expires_at=columns.get("expires_at", state.expires_at),
            max_reads=columns.get("max_reads", state.max_reads),
            read_count=columns.get("read_count", state.read_count),
            burn=columns.get("burn", state.burn),
            sealed_at=columns.get("sealed_at", state.sealed_at),
        )
        if (
            after.max_reads is not None
            and after.read_count >= after.max_reads
            and (after.sealed_at is None)
        ):
            raise InvalidInput(
                f"max_reads must be above the {after.read_count} reads already counted; "
                "pass reset to count afresh",
                field="max_reads",
            )
        return after

    def audit_fields(self) -> dict[str, str | int | bool | None]:
        """The change as ``secret.limits_changed`` metadata records it."""
        fields: dict[str, str | int | bool | None] = {
            name: value for name, value in self.values.items() if name != "burn"
        }
        if "burn" in self.values:
            fields["on_last_read"] = "burn" if self.values["burn"] else "seal"
        fields["reset"] = self.reset
        return fields


def parse_limit_change(given: Mapping[str, object]) -> LimitChange:
    """Returns the change a ``PATCH`` body asks for: only the fields present count, and
    ``null`` removes a TTL or read limit. Raises InvalidInput naming the field that breaks
    its rule, or when the body asks for no change at all."""
    unknown = sorted(set(given) - set(_CHANGE_FIELDS))
    if unknown:
        raise InvalidInput(f"{unknown[0]} is not a field of a limit change", field=unknown[0])
    values: dict[str, Any] = {}
    if "ttl_seconds" in given:
        ttl = given["ttl_seconds"]
        if ttl is not None and not isinstance(ttl, str | int):
            raise InvalidInput(
                "ttl_seconds must be a duration such as 30s, 5m, 2h or 7d", field="ttl_seconds"
            )
        values["ttl_seconds"] = None if ttl is None else parse_ttl(ttl)
    if "max_reads" in given:
        reads = given["max_reads"]
        values["max_reads"] = None if reads is None else parse_max_reads(reads)
    if "delete" in given:
        delete = given["delete"]
        if not isinstance(delete, bool):
            raise InvalidInput("delete must be true or false", field="delete")
        values["burn"] = delete
    reset = given.get("reset", False)
    if not isinstance(reset, bool):
        raise InvalidInput("reset must be true or false", field="reset")
    if not values and not reset:
        raise InvalidInput(
            "give at least one of ttl_seconds, max_reads, delete or reset", field="body"
        )
    return LimitChange(values=values, reset=reset)
