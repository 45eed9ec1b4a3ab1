"""The key-encryption keys of every root-key generation in use, in memory only.

Everything sealed under a KEK (wrapped data keys, MFA seeds, webhook secrets, ephemeral
values) names its generation in its first bytes, so during a root rotation old and new
blobs open side by side. A generation this process has not loaded yet (a rotation started
by another process) is loaded from the vault through its provider on first use.
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from coffer.crypto.keys import (
    DataKey,
    KeyEncryptionKey,
    split_generation,
    tag_generation,
)
from coffer.crypto.providers.configured import RootProviders
from coffer.domain.errors import ConfigError, DecryptionFailed, WrongRootKey
from coffer.domain.root_keys import RootKeyRecord, RootKeyState
from coffer.storage import root_key_store

_log = logging.getLogger("coffer.keys")


class KekRing:
    """Seals under the newest usable generation; opens under whichever sealed."""

    def __init__(self, providers: RootProviders) -> None:
        self._providers = providers
        self._keks: dict[int, KeyEncryptionKey] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KekRing(generations={sorted(self._keks)})"

    def open_generation(self, record: RootKeyRecord) -> KeyEncryptionKey:
        """Loads ``record``'s KEK through its provider and keeps it. Raises ConfigError when
        the provider cannot be reached, WrongRootKey when its key is not the vault's."""
        with self._lock:
            known = self._keks.get(record.generation)
        if known is not None:
            return known
        kek = self._providers.get(record.provider).open_kek(record)
        if kek.check_value() != record.kek_check:
            raise WrongRootKey(
                f"the {record.provider.value} root key does not open generation "
                f"{record.generation} of this vault (check value mismatch)"
            )
        with self._lock:
            self._keks[record.generation] = kek
        return kek

    def kek(self, generation: int, conn: sa.Connection | None) -> KeyEncryptionKey:
        """The KEK of ``generation``, loaded through ``conn`` when needed. Raises
        DecryptionFailed when it is not loaded and there is no ``conn`` (the caller falls
        back to a path that has one) or the generation cannot be loaded."""
        with self._lock:
            known = self._keks.get(generation)
        if known is not None:
            return known
        if conn is None:
            raise DecryptionFailed()
        record = root_key_store.find(conn, generation)
        if record is None or record.state is RootKeyState.RETIRED:
            raise DecryptionFailed()
        try:
            return self.open_generation(record)
        except ConfigError as exc:  # the message names the setting, never key material
            _log.warning("root-key generation %d cannot be opened: %s", generation, exc.message)
            raise DecryptionFailed() from None

    def sealing(self, conn: sa.Connection) -> tuple[int, KeyEncryptionKey]:
        """The generation new blobs go under: the pending one during a root rotation when it
        can be loaded, else the active one. Its row stays share-locked (PostgreSQL) until the
        caller's transaction ends, so a rotation cannot finish in between."""
        live = root_key_store.live(conn, lock=True)
        for record in live:
            try:
                return record.generation, self.open_generation(record)
            except ConfigError:
                if record.state is RootKeyState.ACTIVE:
                    raise
        raise ConfigError("the vault has no active root key generation")

    def seal(self, conn: sa.Connection, plaintext: bytes, aad: bytes) -> bytes:
        """Returns ``plaintext`` sealed under the sealing generation, tagged with it."""
        generation, kek = self.sealing(conn)
        return tag_generation(generation, kek.seal_small_secret(plaintext, aad))

    def open(self, blob: bytes, aad: bytes, conn: sa.Connection | None) -> bytes:
        """Opens what ``seal`` sealed; raises DecryptionFailed otherwise."""
        generation, envelope = split_generation(blob)
        return self.kek(generation, conn).open_small_secret(envelope, aad)

    def wrap(self, conn: sa.Connection, data_key: DataKey, aad: bytes) -> bytes:
        """Returns ``data_key`` wrapped under the sealing generation, tagged with it."""
        generation, kek = self.sealing(conn)
        return tag_generation(generation, kek.wrap(data_key, aad))

    def unwrap(self, blob: bytes, aad: bytes, conn: sa.Connection | None) -> DataKey:
        """Returns the data key ``wrap`` wrapped; raises DecryptionFailed otherwise."""
        generation, envelope = split_generation(blob)
        return self.kek(generation, conn).unwrap(envelope, aad)

    def rewrap(self, blob: bytes, aad: bytes, generation: int, conn: sa.Connection) -> bytes:
        """Returns ``blob`` re-sealed under ``generation`` (which must be loaded or loadable);
        the plaintext never leaves the crypto layer. Raises DecryptionFailed when ``blob``
        does not open."""
        source, envelope = split_generation(blob)
        target = self.kek(generation, conn)
        return tag_generation(generation, self.kek(source, conn).rewrap(envelope, aad, target))
