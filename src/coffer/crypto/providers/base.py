"""The interface every root key provider offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from coffer.crypto.keys import KeyEncryptionKey
from coffer.domain.root_keys import ProviderName, RootKeyRecord

KEK_CONTEXT = "coffer/root-kek/v1"


def kek_context(generation: int) -> bytes:
    """The associated data an HSM or KMS binds a wrapped KEK to: purpose and generation, so a
    wrapped KEK copied to another generation does not unwrap."""
    return f"{KEK_CONTEXT}/{generation}".encode("ascii")


@dataclass(frozen=True)
class NewRootKek:
    """A key-encryption key under a (new) root key: the provider's name for the root key and
    the KEK as the provider wrapped it (None when the KEK is derived from a local root).
    ``shares`` holds the Shamir shares of a new split root, to show once."""

    kek: KeyEncryptionKey
    key_id: str
    wrapped_kek: bytes | None = field(default=None, repr=False)
    shares: tuple[str, ...] = field(default=(), repr=False)


class RootKeyProvider(Protocol):
    """Creates and opens key-encryption keys under one kind of root key.

    Implementations raise ``ConfigError`` naming the setting at fault when the root cannot be
    reached (missing file, token, PIN, credentials, unreachable service: within a timeout,
    never a hang) and ``WrongRootKey`` when it answers but is not the vault's key."""

    name: ProviderName

    def new_kek(self, generation: int, *, rotate: bool) -> NewRootKek:
        """Returns a key-encryption key for ``generation``: under the configured root key at
        ``init`` (``rotate`` false), under a new root key for a root rotation."""
        ...

    def open_kek(self, record: RootKeyRecord) -> KeyEncryptionKey:
        """Returns the key-encryption key of a stored generation."""
        ...

    def finish_rotation(self, record: RootKeyRecord) -> None:
        """Makes ``record`` (now active) the provider's configured root, where that means
        anything (the local key file); idempotent."""
        ...

    def describe(self) -> dict[str, str]:
        """Where the root lives, for status output; never key material or a PIN."""
        ...
