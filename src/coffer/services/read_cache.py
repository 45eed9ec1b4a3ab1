"""Bounded caches whose entries die with their family's epoch or their age.

Used for a token's holder (identity, role, grants; by every bearer-token request) and for a
secret's current ciphertext (by the hot read path; never a plaintext value). An entry is
served only while the node is fresh (``Epochs.fresh``), its family's epoch is the one read
before its data was fetched, and it is younger than ``max_age`` seconds
(``COFFER_CACHE_SECONDS``).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

from coffer.services.cache_epochs import Epochs
from coffer.storage.change_tracking import CacheFamily

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Stamp:
    """The epoch and time taken before fetching what will be cached."""

    epoch: int
    at: float


class EpochCache(Generic[K, V]):
    """Maps keys to values fetched under a ``Stamp``; holds at most ``max_entries``."""

    def __init__(
        self, epochs: Epochs, family: CacheFamily, *, max_age: float, max_entries: int = 10_000
    ) -> None:
        self._epochs = epochs
        self._family = family
        self._max_age = max_age
        self._max_entries = max_entries
        self._entries: dict[K, tuple[V, int, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """False when nothing may be cached now (no fresh epochs, or caching switched off)."""
        return self._max_age > 0 and self._epochs.fresh

    def stamp(self, now: float) -> Stamp | None:
        """Returns the stamp to fetch under, or None when nothing may be cached now."""
        if not self.enabled:
            return None
        return Stamp(self._epochs.current(self._family), now)

    def get(self, key: K, now: float) -> V | None:
        """Returns the cached value for ``key`` while it is valid, else None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, epoch, at = entry
        if (
            epoch != self._epochs.current(self._family)
            or now - at > self._max_age
            or not self._epochs.fresh
        ):
            return None
        return value

    def put(self, key: K, value: V, stamp: Stamp | None) -> None:
        """Caches ``value`` as fetched under ``stamp`` (nothing when ``stamp`` is None)."""
        if stamp is None:
            return
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (value, stamp.epoch, stamp.at)
