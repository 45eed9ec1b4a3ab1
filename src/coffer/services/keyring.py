"""Project data keys: created, wrapped under the key-encryption key, and unwrapped on use."""

from __future__ import annotations

import threading
from collections import OrderedDict

import sqlalchemy as sa

from coffer.crypto.aad import data_key_aad
from coffer.crypto.keys import DataKey
from coffer.domain.errors import DecryptionFailed
from coffer.domain.models import Project
from coffer.services.cache_epochs import Epochs, LocalEpochs
from coffer.services.kek_ring import KekRing
from coffer.storage import project_store
from coffer.storage.change_tracking import CacheFamily

UNWRAPPED_CACHE_SIZE = 1024


class Keyring:
    """Wraps project data keys under the key-encryption keys (memory only) and unwraps them.

    Unwrapped data keys are cached by (project, version, wrapped bytes). Callers fetch the
    wrapped key from the database (or a cache of it that the same epochs keep fresh) first,
    so a destroyed or replaced key is never served. When the ``KEYS`` epoch moves (a key
    rotated or destroyed on any node) every unwrapped key is dropped from memory too.
    """

    def __init__(self, keks: KekRing, epochs: Epochs | None = None) -> None:
        self.keks = keks
        self._epochs = epochs or LocalEpochs()
        self._epoch = self._epochs.current(CacheFamily.KEYS)
        self._unwrapped: OrderedDict[tuple[str, int, bytes], DataKey] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "Keyring(<key-encryption key hidden>)"

    def create_data_key(
        self, conn: sa.Connection, project: Project, version: int, now: float
    ) -> None:
        """Generates data key ``version`` for the project and stores it wrapped."""
        wrapped = self.keks.wrap(
            conn,
            DataKey.generate(),
            data_key_aad(org_id=project.org_id, project_id=project.id, key_version=version),
        )
        project_store.insert_data_key(
            conn, project_id=project.id, version=version, wrapped_key=wrapped, now=now
        )

    def data_key(self, conn: sa.Connection, project: Project, version: int) -> DataKey:
        """Returns the unwrapped data key ``version``; raises DecryptionFailed when it was
        destroyed or does not unwrap under this root key."""
        wrapped = project_store.get_wrapped_data_key(conn, project.id, version)
        return self.unwrap(project, version, wrapped, conn)

    def unwrap(
        self,
        project: Project,
        version: int,
        wrapped: bytes | None,
        conn: sa.Connection | None = None,
    ) -> DataKey:
        """Returns the data key from its wrapped form (fetched by the caller); raises
        DecryptionFailed when ``wrapped`` is None (destroyed) or does not unwrap. Without
        ``conn`` a root-key generation this process has not loaded yet also fails, so the
        caller can retry on a path that has a connection."""
        if wrapped is None:
            raise DecryptionFailed()
        cache_key = (project.id, version, bytes(wrapped))
        epoch = self._epochs.current(CacheFamily.KEYS)
        with self._lock:
            if epoch != self._epoch:
                self._unwrapped.clear()
                self._epoch = epoch
            cached = self._unwrapped.get(cache_key)
            if cached is not None:
                self._unwrapped.move_to_end(cache_key)
                return cached
        data_key = self.keks.unwrap(
            wrapped,
            data_key_aad(org_id=project.org_id, project_id=project.id, key_version=version),
            conn,
        )
        with self._lock:
            self._unwrapped[cache_key] = data_key
            if len(self._unwrapped) > UNWRAPPED_CACHE_SIZE:
                self._unwrapped.popitem(last=False)
        return data_key

    def forget(self, project: Project) -> None:
        """Drops the project's unwrapped keys from memory (on project deletion)."""
        with self._lock:
            for cache_key in [k for k in self._unwrapped if k[0] == project.id]:
                del self._unwrapped[cache_key]
