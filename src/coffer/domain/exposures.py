"""Leaked vault secrets: what a scan reports (keyed fingerprints, never values), what the vault
answers, and the rotation report built from the exposures it recorded.

An exposure is "open" while the exposed version is still the secret's current one; writing a
new version resolves it (the exposure stays as history). The rotation report says
``rotate now`` for a secret with an open exposure, ``ok`` otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from coffer.domain.errors import InvalidInput

MAX_FINDINGS = 10_000
MAX_RULE_ID_CHARS = 128
# Locations are bounded in UTF-8 bytes, not characters: (secret_id, version, location) is a
# unique index, and PostgreSQL refuses an index entry above about 2.7 KB, which 1024
# characters of non-ASCII text exceed.
MAX_LOCATION_BYTES = 1024
# Versions of each secret compared with a scan's fingerprints: the newest ones. An older
# value has been replaced this many times since; matching it would tell little, and the
# bound keeps a match request's work proportional to the number of secrets.
VERSIONS_COMPARED = 20
# Stored versions one match request may compare in all (each is decrypted and hashed). A
# caller whose readable secrets hold more is refused (TooLarge naming ``project``) and
# matches one project at a time.
MAX_VERSIONS_PER_MATCH = 50_000
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
# Characters a location may not hold (control characters and Unicode line separators).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class ReportedFinding:
    """One finding as a scan reports it: the keyed fingerprint of its secret, the rule that
    found it and where (``path:line``, with the commit for git history)."""

    fingerprint: str
    rule_id: str
    location: str


def _text_field(value: object, field: str, *, max_chars: int, max_bytes: int | None = None) -> str:
    """Returns ``value`` when it is non-empty text of at most ``max_chars`` characters (and
    ``max_bytes`` bytes of UTF-8) without control characters; raises InvalidInput naming
    ``field`` otherwise (also for lone surrogates, which have no UTF-8 form)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{field} must be a non-empty string", field=field)
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text", field=field) from None
    if len(value) > max_chars:
        raise InvalidInput(f"{field} must be at most {max_chars} characters", field=field)
    if max_bytes is not None and size > max_bytes:
        raise InvalidInput(f"{field} must be at most {max_bytes} bytes of UTF-8", field=field)
    if CONTROL_CHARACTERS.search(value):
        raise InvalidInput(f"{field} must not contain control characters", field=field)
    return value


def parse_finding(
    index: int, fingerprint: object, rule_id: object, location: object
) -> ReportedFinding:
    """Returns finding number ``index`` of a request. Raises InvalidInput naming the field
    (``findings.3.fingerprint``) when the fingerprint is not 64 lowercase hex characters, or
    the rule id (at most 128 characters) or location (at most 1024 bytes of UTF-8) is
    empty, too long, not valid Unicode or holds control characters. Messages never echo a
    fingerprint."""
    where = f"findings.{index}"
    if not isinstance(fingerprint, str) or not _FINGERPRINT.fullmatch(fingerprint):
        raise InvalidInput(
            f"{where}.fingerprint must be 64 lowercase hex characters (HMAC-SHA256)",
            field=f"{where}.fingerprint",
        )
    return ReportedFinding(
        fingerprint=fingerprint,
        rule_id=_text_field(rule_id, f"{where}.rule_id", max_chars=MAX_RULE_ID_CHARS),
        location=_text_field(
            location,
            f"{where}.location",
            max_chars=MAX_LOCATION_BYTES,
            max_bytes=MAX_LOCATION_BYTES,
        ),
    )


def check_finding_count(count: int) -> None:
    """Raises InvalidInput naming ``findings`` unless there are 1 to 10,000 of them."""
    if count < 1:
        raise InvalidInput("findings must hold at least one finding", field="findings")
    if count > MAX_FINDINGS:
        raise InvalidInput(
            f"findings must hold at most {MAX_FINDINGS} findings per request, not {count}; "
            "send them in several requests",
            field="findings",
        )


@dataclass(frozen=True, slots=True)
class MatchRequest:
    """A validated match request: the client's nonce, its findings, and the project whose
    secrets alone are compared (None: every project the caller may read). A scan sends all
    its batches under one nonce, which lets the server reuse what it computed for the
    first batch."""

    nonce: bytes
    findings: tuple[ReportedFinding, ...]
    project: str | None = None

    def __repr__(self) -> str:
        return (
            f"MatchRequest(nonce=<{len(self.nonce)} bytes>, findings={len(self.findings)}, "
            f"project={self.project!r})"
        )


@dataclass(frozen=True, slots=True)
class ExposureMatch:
    """Finding number ``index`` of the request equals version ``version`` of the secret
    ``project``/``environment``/``key``; ``current`` says whether that is its live value."""

    index: int
    project: str
    environment: str
    key: str
    version: int
    current: bool


@dataclass(frozen=True, slots=True)
class ExposureRecord:
    """One recorded exposure of a secret's version: when, where and by which rule it was
    found, and who reported it."""

    version: int
    detected_at: float
    rule_id: str
    location: str
    reported_by: str


class RotationStatus(StrEnum):
    """What the rotation report asks for a secret."""

    ROTATE_NOW = "rotate now"
    OK = "ok"


@dataclass(frozen=True, slots=True)
class RotationEntry:
    """One secret in the rotation report: its current version, when it was written (the
    last rotation), and its exposures, newest first."""

    project: str
    environment: str
    key: str
    current_version: int
    last_rotated: float
    exposures: tuple[ExposureRecord, ...]

    @property
    def open_exposures(self) -> tuple[ExposureRecord, ...]:
        """The exposures of the current version (resolved by writing a new one)."""
        return tuple(e for e in self.exposures if e.version == self.current_version)

    @property
    def status(self) -> RotationStatus:
        """``rotate now`` while the current version is exposed, else ``ok``."""
        return RotationStatus.ROTATE_NOW if self.open_exposures else RotationStatus.OK

    def age_days(self, now: float) -> int:
        """Whole days since the current version was written."""
        return max(0, int((now - self.last_rotated) // SECONDS_PER_DAY))


def report_order(entries: Sequence[RotationEntry]) -> list[RotationEntry]:
    """Secrets to rotate now first, then those exposed in an earlier version, then the
    rest; by project, environment and key within each group."""
    return sorted(
        entries,
        key=lambda e: (
            e.status is not RotationStatus.ROTATE_NOW,
            not e.exposures,
            e.project,
            e.environment,
            e.key,
        ),
    )
