"""Time-based one-time passwords (RFC 6238 through pyotp) and one-time recovery codes.

A code is accepted for the current 30-second step and one step either side (clock drift);
the caller stores the last accepted step so that no code, or earlier one, is accepted twice.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp

STEP_SECONDS = 30
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_totp_seed() -> str:
    """Returns a new random base32 seed (160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(seed: str, *, account: str, issuer: str = "coffer") -> str:
    """Returns the ``otpauth://`` URI an authenticator app scans."""
    return pyotp.TOTP(seed).provisioning_uri(name=account, issuer_name=issuer)


def current_code(seed: str, at: float | None = None) -> str:
    """Returns the code for ``at`` (default now); used by tests and by nothing else."""
    return pyotp.TOTP(seed).at(int(at if at is not None else time.time()))


def accepted_step(seed: str, code: str, *, last_step: int | None, now: float) -> int | None:
    """Returns the time step ``code`` belongs to when it is valid now and later than
    ``last_step``; None otherwise (wrong, stale or replayed). Compares in constant time."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit()) or len(code) != 6:
        return None
    totp = pyotp.TOTP(seed)
    current = int(now) // STEP_SECONDS
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if last_step is not None and step <= last_step:
            continue
        if hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
            return step
    return None


def new_recovery_codes() -> list[str]:
    """Returns ``RECOVERY_CODE_COUNT`` random codes like ``k7mq-2x9p-wd4h`` (about 64 bits)."""

    def one() -> str:
        raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(13))
        return f"{raw[:4]}-{raw[4:8]}-{raw[8:13]}"

    return [one() for _ in range(RECOVERY_CODE_COUNT)]


def hash_recovery_code(code: str) -> str:
    """Returns the stored form of a recovery code (SHA-256 of its canonical spelling)."""
    canonical = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
