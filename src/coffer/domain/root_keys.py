"""Root-key generations: which provider holds the root of the key hierarchy, and when it
changed. A vault has one active generation, at most one pending (a root rotation under way)
and any number of retired ones kept for the record."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class RootKeyState(enum.StrEnum):
    """Where a generation stands: ``pending`` during a root rotation, ``active`` once every
    sealed key has moved to it, ``retired`` (key material forgotten) after that."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


class ProviderName(enum.StrEnum):
    """The root key providers: a local key file or variable, a Shamir-split local key, a
    PKCS#11 HSM, AWS KMS."""

    LOCAL = "local"
    SHAMIR = "shamir"
    PKCS11 = "pkcs11"
    AWSKMS = "awskms"


@dataclass(frozen=True)
class RootKeyRecord:
    """One generation as stored: its provider, the provider's name for the key (the local
    key's check value, an HSM key label, a KMS key ARN), the key-encryption key as the
    provider wrapped it (None for local roots, which derive it), the KEK's check value and
    the audit keys sealed under the KEK."""

    generation: int
    state: RootKeyState
    provider: ProviderName
    key_id: str
    kek_check: str
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None
    wrapped_kek: bytes | None = field(default=None, repr=False)
    audit_keys_sealed: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RootKeyStatus:
    """What ``coffer root-key status`` shows: the active generation, a pending one (a root
    rotation under way) and how many sealed keys still wait for it."""

    active: RootKeyRecord
    pending: RootKeyRecord | None
    remaining: int
    history: tuple[RootKeyRecord, ...]
