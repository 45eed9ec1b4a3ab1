"""Client-side encryption of shared values, so the server alone can never read one.

``coffer share`` seals the value under a fresh 256-bit key and sends only the envelope; the
key travels in the link's fragment (``#...``), which browsers never send to a server. The
envelope is the one of ``aead`` (version byte, 12-byte nonce, ciphertext and tag) with the
associated data ``SHARE_AAD``; the share page opens it with WebCrypto's AES-GCM, and
``coffer share get`` with ``open_share``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from coffer.crypto.aead import KEY_BYTES, new_key, open_envelope, seal
from coffer.domain.errors import DecryptionFailed

SHARE_AAD = b"coffer/share/v1"
PROOF_LABEL = b"coffer/share/proof/v1"
PROOF_CHARS = 43  # unpadded URL-safe base64 of a SHA-256 digest
_KEY_TEXT = re.compile(r"[A-Za-z0-9_-]{43}")  # unpadded URL-safe base64 of 32 bytes


def encode_share_key(key: bytes) -> str:
    """Returns ``key`` as unpadded URL-safe base64, the form a link fragment carries."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def decode_share_key(text: str) -> bytes:
    """Returns the key a link fragment carries; raises DecryptionFailed when it is not
    unpadded URL-safe base64 of exactly 32 bytes."""
    if not isinstance(text, str) or not _KEY_TEXT.fullmatch(text):
        raise DecryptionFailed()
    try:
        key = base64.urlsafe_b64decode(text + "=")
    except (binascii.Error, ValueError):
        raise DecryptionFailed() from None
    if len(key) != KEY_BYTES:
        raise DecryptionFailed()
    return key


def share_proof(key: bytes) -> str:
    """Returns the proof that a caller holds a share's key: SHA-256 of ``PROOF_LABEL`` and
    the key, as unpadded URL-safe base64. The server keeps only a hash of it and hands the
    ciphertext only to a caller who presents it, so a link seen without its fragment (in a
    proxy log, say) cannot even burn the share. It reveals nothing about the key."""
    return encode_share_key(hashlib.sha256(PROOF_LABEL + key).digest())


def seal_share(plaintext: bytes, *, key: bytes | None = None) -> tuple[str, bytes]:
    """Returns (the link-fragment form of the key, the envelope of ``plaintext``). A fresh
    random key is used unless one is given (known-answer tests only)."""
    key = new_key() if key is None else key
    return encode_share_key(key), seal(key, plaintext, SHARE_AAD)


def open_share(key_text: str, envelope: bytes) -> bytes:
    """Returns the plaintext of a share; raises DecryptionFailed for a wrong, truncated or
    malformed key or a tampered envelope."""
    return open_envelope(decode_share_key(key_text), envelope, SHARE_AAD)
