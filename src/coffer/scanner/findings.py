"""What a scan reports: ``Finding``, with the secret masked everywhere except ``secret``."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

_FINGERPRINT_DOMAIN = b"coffer-scan/fingerprint/v1\x00"
FINGERPRINT_CHARS = 24
_MASK_STARS = 32
_CHOSEN_KINDS = frozenset({"generic", "connection-string"})


def fingerprint(secret: str, *, guessable: bool = False) -> str:
    """Returns the content fingerprint of ``secret``: 24 hex characters (96 bits).

    It depends on the secret's text only (not its path, line or rule), so a baseline keyed by it
    keeps ignoring a secret that moved and still reports a new secret on an old line.
    Fingerprints end up in committed baselines and uploaded SARIF, so a ``guessable`` secret
    (one a person may have chosen) is hashed with scrypt, so that each guess tried against a
    fingerprint costs about half a millisecond and 256 KiB instead of nanoseconds; a random
    token is hashed with SHA-256, which its own entropy already makes hopeless to guess.
    """
    if guessable:
        return _slow_fingerprint(secret)
    digest = hashlib.sha256(_FINGERPRINT_DOMAIN + secret.encode("utf-8")).hexdigest()
    return digest[:FINGERPRINT_CHARS]


@functools.lru_cache(maxsize=4096)
def _slow_fingerprint(secret: str) -> str:
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=_FINGERPRINT_DOMAIN, n=2**8, r=8, p=1, dklen=16
    )
    return digest.hex()[:FINGERPRINT_CHARS]


def is_guessable(kind: str) -> bool:
    """True for the kinds whose secrets a person may have chosen: the generic rule's and
    connection strings' passwords. Provider tokens are random (80 bits and more)."""
    return kind in _CHOSEN_KINDS


def mask(secret: str) -> str:
    """Returns ``secret`` with all but a short recognisable prefix replaced by ``*``.

    At most 4 characters and at most a quarter of the secret stay visible, so a short password
    shows almost nothing; at most 32 ``*`` follow, so a PEM key stays one short line.
    """
    shown = min(4, len(secret) // 4)
    return secret[:shown] + "*" * min(max(len(secret) - shown, 4), _MASK_STARS)


@dataclass(frozen=True, slots=True)
class Finding:
    """One secret found at one place.

    ``line`` and ``column`` are 1-based; the secret ends on ``end_line`` (the same line unless
    it spans several, as a PEM key does) before ``end_column`` (exclusive). ``secret`` holds the
    plaintext for formatters that must mask it and for the vault match; it never shows in
    ``repr``. ``verified`` is True when the token's own checksum was checked offline.
    ``commit``, ``author`` and ``date`` are set for findings in git history. ``fingerprint``
    is the secret's content fingerprint (see ``fingerprint``), computed on construction (and
    again by ``dataclasses.replace``).
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
    end_line: int = 0
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Computed where the finding is made (a worker process), so the slow hash of a chosen
        # password runs in parallel and travels with the finding.
        if self.end_line < self.line:
            object.__setattr__(self, "end_line", self.line)
        value = fingerprint(self.secret, guessable=is_guessable(self.kind))
        object.__setattr__(self, "fingerprint", value)

    @property
    def masked(self) -> str:
        """The secret with all but a short prefix masked."""
        return mask(self.secret)

    def __repr__(self) -> str:
        return (
            f"Finding(rule_id={self.rule_id!r}, path={self.path!r}, line={self.line}, "
            f"column={self.column}, secret={self.masked!r})"
        )
