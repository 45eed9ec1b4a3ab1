"""AES-256-GCM envelopes and HKDF-SHA256: the only primitives coffer uses.

An envelope is ``version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)``. Every
failure to open one raises the single opaque ``DecryptionFailed``; nothing about the cause, the
key or the plaintext leaves this module.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from coffer.domain.errors import DecryptionFailed

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
ENVELOPE_VERSION = 1
HKDF_MAX_LENGTH = 255 * 32
_HEADER_BYTES = 1 + NONCE_BYTES


def new_key() -> bytes:
    """Returns ``KEY_BYTES`` fresh random bytes from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def seal(key: bytes, plaintext: bytes, aad: bytes, *, nonce: bytes | None = None) -> bytes:
    """Returns the AES-256-GCM envelope of ``plaintext`` bound to ``aad``.

    The nonce is random unless given; pass one only in known-answer tests, since reusing a
    nonce under the same key breaks GCM. Raises ``ValueError`` when ``key`` is not
    ``KEY_BYTES`` long or ``nonce`` is not ``NONCE_BYTES`` long (programmer errors).
    """
    if len(key) != KEY_BYTES:
        raise ValueError(f"key must be {KEY_BYTES} bytes")
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    elif len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    body = AESGCM(key).encrypt(nonce, plaintext, aad)
    return bytes([ENVELOPE_VERSION]) + nonce + body


def open_envelope(key: bytes, envelope: bytes, aad: bytes) -> bytes:
    """Returns the plaintext sealed in ``envelope`` under ``key`` and ``aad``.

    Raises ``DecryptionFailed`` (and nothing else) when the key has the wrong length, the
    envelope is too short or has an unknown version byte, or the tag does not verify (wrong
    key, wrong ``aad`` or any tampering).
    """
    if len(key) != KEY_BYTES or len(envelope) < _HEADER_BYTES + TAG_BYTES:
        raise DecryptionFailed()
    if envelope[0] != ENVELOPE_VERSION:
        raise DecryptionFailed()
    nonce = envelope[1:_HEADER_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, envelope[_HEADER_BYTES:], aad)
    except (InvalidTag, ValueError, TypeError, OverflowError):
        raise DecryptionFailed() from None


def hkdf_sha256(ikm: bytes, *, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """Returns ``length`` bytes of HKDF-SHA256 (RFC 5869) output for ``ikm``, ``salt``, ``info``.

    No salt (``None``) and an empty salt are equivalent, as in the RFC. Raises ``ValueError``
    when ``length`` is not between 1 and ``HKDF_MAX_LENGTH`` (8160).
    """
    if not 1 <= length <= HKDF_MAX_LENGTH:
        raise ValueError(f"length must be between 1 and {HKDF_MAX_LENGTH}")
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(ikm)
