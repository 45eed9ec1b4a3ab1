"""Password hashing with Argon2id (argon2-cffi), never hand-rolled.

Production parameters are OWASP's minimum for Argon2id: 19 MiB of memory, 2 iterations,
1 lane. Tests may lower them through ``Settings``; one test pins these defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

OWASP_MEMORY_KIB = 19 * 1024
OWASP_TIME_COST = 2
OWASP_PARALLELISM = 1


@dataclass(frozen=True)
class Argon2Parameters:
    """Cost parameters of Argon2id."""

    memory_kib: int = OWASP_MEMORY_KIB
    time_cost: int = OWASP_TIME_COST
    parallelism: int = OWASP_PARALLELISM


class PasswordHasher:
    """Hashes and verifies passwords; verification of an unknown user costs the same as of a
    known one (``verify_dummy``)."""

    def __init__(self, params: Argon2Parameters) -> None:
        self.params = params
        self._argon = _Argon2(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._dummy = self._argon.hash("coffer-dummy-password-for-timing")

    def hash(self, password: str) -> str:
        """Returns the PHC string ``$argon2id$v=19$m=...,t=...,p=...$salt$hash``."""
        return self._argon.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        """True when ``password`` matches ``stored``; False for a mismatch or a malformed hash."""
        try:
            return self._argon.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def verify_dummy(self, password: str) -> None:
        """Spends the time of one verification, for a user that does not exist."""
        self.verify(self._dummy, password)

    def needs_rehash(self, stored: str) -> bool:
        """True when ``stored`` was made with other parameters than the current ones."""
        try:
            return self._argon.check_needs_rehash(stored)
        except InvalidHashError:
            return True
