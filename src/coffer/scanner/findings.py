"""What a scan reports: ``Finding``, with the secret masked everywhere except ``secret``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

_FINGERPRINT_DOMAIN = b"coffer-scan/fingerprint/v1\x00"
FINGERPRINT_CHARS = 24


def fingerprint(secret: str) -> str:
    """Returns the content fingerprint of ``secret``: 24 hex characters (96 bits) of SHA-256.

    It depends on the secret's text only (not its path, line or rule), so a baseline keyed by it
    keeps ignoring a secret that moved and still reports a new secret on an old line.
    """
    digest = hashlib.sha256(_FINGERPRINT_DOMAIN + secret.encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_CHARS]


def mask(secret: str) -> str:
    """Returns ``secret`` with all but a short recognisable prefix replaced by ``*``.

    At most 4 characters and at most a quarter of the secret stay visible, so a short password
    shows almost nothing.
    """
    shown = min(4, len(secret) // 4)
    return secret[:shown] + "*" * max(len(secret) - shown, 4)


@dataclass(frozen=True, slots=True)
class Finding:
    """One secret found at one place.

    ``line`` and ``column`` are 1-based; ``end_column`` is exclusive. ``secret`` holds the
    plaintext for formatters that must mask it and for the vault match; it never shows in
    ``repr``. ``verified`` is True when the token's own checksum was checked offline.
    ``commit``, ``author`` and ``date`` are set for findings in git history.
    """

    rule_id: str
    title: str
    kind: str
    severity: str
    path: str
    line: int
    column: int
    end_column: int
    secret: str = field(repr=False)
    verified: bool = False
    commit: str | None = None
    author: str | None = None
    date: str | None = None

    @property
    def fingerprint(self) -> str:
        """The content fingerprint of the secret (see ``fingerprint``)."""
        return fingerprint(self.secret)

    @property
    def masked(self) -> str:
        """The secret with all but a short prefix masked."""
        return mask(self.secret)

    def __repr__(self) -> str:
        return (
            f"Finding(rule_id={self.rule_id!r}, path={self.path!r}, line={self.line}, "
            f"column={self.column}, secret={self.masked!r})"
        )
