"""The audit log's keys: an HMAC key that marks entries written by coffer, and the Ed25519
key that signs checkpoints. Both are derived from the key-encryption key, so they live in
memory only and need no storage of their own; the public key is what an auditor trusts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from coffer.crypto.aead import KEY_BYTES, hkdf_sha256
from coffer.crypto.keys import KeyEncryptionKey
from coffer.domain.errors import DecryptionFailed, InvalidInput

MAC_INFO = b"coffer/audit-mac/v1"
SEALED_AAD = b"coffer/audit-keys/v1"
SIGNING_INFO = b"coffer/audit-signing/v1"
_MASK = "********"


class AuditPublicKey:
    """An Ed25519 public key that checks checkpoint signatures."""

    __slots__ = ("_key", "raw")

    def __init__(self, raw: bytes) -> None:
        """Raises InvalidInput when ``raw`` is not a 32-byte Ed25519 public key."""
        if len(raw) != 32:
            raise InvalidInput("public key: an Ed25519 public key is 32 bytes")
        self.raw = bytes(raw)
        self._key = Ed25519PublicKey.from_public_bytes(self.raw)

    @classmethod
    def from_text(cls, text: str) -> AuditPublicKey:
        """Reads a key printed by ``coffer audit public-key``: PEM, or base64 of the 32 raw
        bytes. Raises InvalidInput naming the accepted forms."""
        stripped = text.strip()
        if stripped.startswith("-----BEGIN PUBLIC KEY-----"):
            try:
                key = load_pem_public_key(stripped.encode("ascii"))
            except (ValueError, UnicodeEncodeError):
                key = None
            if not isinstance(key, Ed25519PublicKey):
                raise InvalidInput("public key: the PEM block is not an Ed25519 public key")
            return cls(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
        try:
            raw = base64.b64decode(stripped, validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            raise InvalidInput(
                "public key: expected a PEM Ed25519 public key or base64 of its 32 bytes"
            )
        return cls(raw)

    @property
    def key_id(self) -> str:
        """A short name for the key: the first 8 bytes of SHA-256 of the raw key, in hex."""
        return hashlib.sha256(self.raw).hexdigest()[:16]

    def to_pem(self) -> str:
        """Returns the key as a PEM SubjectPublicKeyInfo block."""
        return self._key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()

    def to_base64(self) -> str:
        """Returns base64 of the 32 raw bytes."""
        return base64.b64encode(self.raw).decode("ascii")

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class AuditKeys:
    """The vault's audit MAC and signing keys. ``repr`` is masked and instances do not pickle."""

    __slots__ = ("_mac_key", "_seed", "_signer", "public")

    def __init__(self, mac_key: bytes, signing_seed: bytes) -> None:
        if len(mac_key) != KEY_BYTES or len(signing_seed) != KEY_BYTES:
            raise ValueError("audit keys are 32 bytes each")
        self._mac_key = bytes(mac_key)
        self._seed = bytes(signing_seed)
        self._signer = Ed25519PrivateKey.from_private_bytes(signing_seed)
        self.public = AuditPublicKey(
            self._signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        )

    @classmethod
    def derive(cls, kek: KeyEncryptionKey) -> AuditKeys:
        """Returns the keys HKDF-SHA256 derives from the key-encryption key."""
        material = kek._material
        return cls(
            hkdf_sha256(material, info=MAC_INFO, length=KEY_BYTES),
            hkdf_sha256(material, info=SIGNING_INFO, length=KEY_BYTES),
        )

    def seal(self, kek: KeyEncryptionKey) -> bytes:
        """Returns both keys sealed under ``kek``: a root rotation re-seals them, so the
        public key an auditor trusts survives it."""
        return kek.seal_small_secret(self._mac_key + self._seed, SEALED_AAD)

    @classmethod
    def unseal(cls, kek: KeyEncryptionKey, sealed: bytes) -> AuditKeys:
        """Returns the keys ``seal`` sealed; raises DecryptionFailed when they do not open."""
        material = kek.open_small_secret(sealed, SEALED_AAD)
        if len(material) != 2 * KEY_BYTES:
            raise DecryptionFailed()
        return cls(material[:KEY_BYTES], material[KEY_BYTES:])

    def mac(self, message: bytes) -> bytes:
        """Returns HMAC-SHA256 of ``message`` under the audit MAC key."""
        return hmac.digest(self._mac_key, message, "sha256")

    def mac_matches(self, message: bytes, tag: bytes | None) -> bool:
        """True when ``tag`` is the MAC of ``message`` (constant-time comparison)."""
        return tag is not None and hmac.compare_digest(self.mac(message), tag)

    def sign(self, message: bytes) -> bytes:
        """Returns the Ed25519 signature of ``message``."""
        return self._signer.sign(message)

    def __repr__(self) -> str:
        return f"AuditKeys({_MASK}, public={self.public.key_id})"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("AuditKeys cannot be pickled")
