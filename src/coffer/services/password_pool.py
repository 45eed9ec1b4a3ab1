"""Password hashing with a cap on how many hashes run at once.

Argon2id is deliberately costly (19 MiB and tens of milliseconds each). Without a cap, a
flood of logins would occupy every core and starve secret reads; with it, at most
``concurrency`` hashes run and the rest wait their turn, or get RateLimited after
``wait_seconds``.
"""

from __future__ import annotations

import threading

from coffer.crypto.passwords import PasswordHasher
from coffer.domain.errors import RateLimited


class PasswordPool:
    """Hashes and verifies passwords, at most ``concurrency`` at a time."""

    def __init__(
        self, hasher: PasswordHasher, *, concurrency: int, wait_seconds: float = 10.0
    ) -> None:
        self._hasher = hasher
        self._slots = threading.BoundedSemaphore(concurrency)
        self._wait = wait_seconds

    def _acquire(self) -> None:
        if not self._slots.acquire(timeout=self._wait):
            raise RateLimited("the server is busy checking passwords; retry shortly", retry_after=1)

    def hash(self, password: str) -> str:
        """Returns the Argon2id hash of ``password``."""
        self._acquire()
        try:
            return self._hasher.hash(password)
        finally:
            self._slots.release()

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``. With ``stored`` None (no such user) it
        spends the same time on a dummy hash and returns False."""
        self._acquire()
        try:
            if stored is None:
                self._hasher.verify_dummy(password)
                return False
            return self._hasher.verify(stored, password)
        finally:
            self._slots.release()
