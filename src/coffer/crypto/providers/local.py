"""The local root key: base64 of 32 bytes in a key file (mode 0600) or ``COFFER_ROOT_KEY``.

The key-encryption key is derived from it (HKDF). A root rotation writes the new key to
``<key file>.next`` first and moves it over the key file only once the vault has committed to
it, so a crash at any point leaves a key file that opens every generation in use.
"""

from __future__ import annotations

import os
from pathlib import Path

from coffer.crypto.keys import (
    ENV_SOURCE,
    KeyEncryptionKey,
    RootKey,
    key_check_value,
    load_root_key,
    write_root_key_file,
)
from coffer.crypto.providers.base import NewRootKek
from coffer.domain.errors import ConfigError, WrongRootKey
from coffer.domain.root_keys import ProviderName, RootKeyRecord


def next_key_file(key_file: Path) -> Path:
    """Where a root rotation keeps the new key until the vault commits to it."""
    return key_file.with_name(key_file.name + ".next")


class LocalRootProvider:
    """A root key from ``COFFER_ROOT_KEY`` or the key file."""

    name = ProviderName.LOCAL

    def __init__(self, *, env_value: str | None, key_file: Path) -> None:
        self._env_value = env_value
        self._key_file = key_file

    def __repr__(self) -> str:
        return f"LocalRootProvider(key_file={str(self._key_file)!r})"

    def root(self) -> RootKey:
        """The configured root key; raises ConfigError saying what is wrong."""
        return load_root_key(env_value=self._env_value, key_file=self._key_file)

    def new_kek(self, generation: int, *, rotate: bool) -> NewRootKek:
        """At init, the configured key's KEK; for a rotation, a new key written to the
        ``.next`` file (replacing a stale one that no generation uses)."""
        if not rotate:
            root = self.root()
            return NewRootKek(kek=KeyEncryptionKey.derive(root), key_id=key_check_value(root))
        if self._env_value:
            raise ConfigError(
                f"the root key comes from {ENV_SOURCE}, which coffer cannot change; keep it in "
                "a key file (COFFER_ROOT_KEY_FILE) to rotate it"
            )
        pending = next_key_file(self._key_file)
        pending.unlink(missing_ok=True)
        root = RootKey.generate()
        # Written aside and renamed, so a crash never leaves a partial `.next` file.
        partial = pending.with_name(pending.name + ".partial")
        partial.unlink(missing_ok=True)
        write_root_key_file(partial, root)
        partial.replace(pending)
        return NewRootKek(kek=KeyEncryptionKey.derive(root), key_id=key_check_value(root))

    def open_kek(self, record: RootKeyRecord) -> KeyEncryptionKey:
        """The KEK of the key (file, ``.next`` file or variable) whose check value the
        generation recorded. Raises WrongRootKey when none matches."""
        for root in self._candidates():
            if key_check_value(root) == record.key_id:
                return KeyEncryptionKey.derive(root)
        raise WrongRootKey(
            f"the root key does not match this vault (generation {record.generation}: key "
            f"check value mismatch); check {ENV_SOURCE} or the root key file {self._key_file}"
        )

    def _candidates(self) -> list[RootKey]:
        """The configured key and, during a rotation, the ``.next`` file's key (alone when a
        vault moving here from an HSM or KMS has no key file yet)."""
        pending = next_key_file(self._key_file)
        if self._env_value or not pending.exists():
            return [self.root()]
        found = [self.root()] if self._key_file.exists() else []
        try:
            found.append(load_root_key(env_value=None, key_file=pending))
        except ConfigError:
            # Not a key: a rotation that never recorded its generation left it.
            if not found:
                raise
        return found

    def finish_rotation(self, record: RootKeyRecord) -> None:
        """Moves the ``.next`` file over the key file when it holds ``record``'s key."""
        pending = next_key_file(self._key_file)
        if self._env_value or not pending.exists():
            return
        try:
            if key_check_value(load_root_key(env_value=None, key_file=pending)) != record.key_id:
                return
            pending.replace(self._key_file)
        except (ConfigError, FileNotFoundError):
            return  # another process finished the move first
        directory = os.open(self._key_file.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def describe(self) -> dict[str, str]:
        """The key's source: the variable or the file's path."""
        return {"source": ENV_SOURCE if self._env_value else str(self._key_file)}
