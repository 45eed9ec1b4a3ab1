"""Keyed fingerprints that let a scan ask the vault "is this one of yours?" without sending it.

The client draws a fresh random nonce for each scan and sends, for each finding,
``HMAC-SHA256(nonce, secret as UTF-8)`` in hex together with the nonce (every batch of one
scan under the same nonce). The server computes the same HMAC over each stored value the
caller may read and compares. The plaintext never leaves the client, and since each scan has
its own nonce, a fingerprint seen once (in a proxy's log, say) says nothing about the next
scan and cannot be looked up in a table built in advance. Both sides import this module, so
they cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets

from coffer.domain.errors import InvalidInput

NONCE_BYTES = 32
MIN_NONCE_BYTES = 16
MAX_NONCE_BYTES = 64
FINGERPRINT_HEX_CHARS = 64
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def new_nonce() -> bytes:
    """Returns 32 fresh random bytes from the operating system's CSPRNG."""
    return secrets.token_bytes(NONCE_BYTES)


def keyed_fingerprint(nonce: bytes, secret: str) -> str:
    """Returns HMAC-SHA256 keyed by ``nonce`` over ``secret`` encoded as UTF-8, as 64
    lowercase hex characters. Raises UnicodeEncodeError for text with lone surrogates (the
    vault stores none)."""
    return hmac.new(nonce, secret.encode("utf-8"), hashlib.sha256).hexdigest()


def encode_nonce(nonce: bytes) -> str:
    """Returns ``nonce`` as unpadded base64url text (the wire form)."""
    return base64.urlsafe_b64encode(nonce).rstrip(b"=").decode("ascii")


def decode_nonce(text: str) -> bytes:
    """Returns the nonce from its base64url text (padding optional). Raises InvalidInput
    naming ``nonce`` when it is not base64url or not 16 to 64 bytes long."""
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text):
        raise InvalidInput("nonce must be base64url text", field="nonce")
    body = text.rstrip("=")
    try:
        nonce = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InvalidInput("nonce must be base64url text", field="nonce") from None
    if not MIN_NONCE_BYTES <= len(nonce) <= MAX_NONCE_BYTES:
        raise InvalidInput(
            f"nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes long, not {len(nonce)}",
            field="nonce",
        )
    return nonce


def same_fingerprint(first: str, second: str) -> bool:
    """True when the two fingerprints are equal, compared in constant time."""
    return hmac.compare_digest(first.encode("ascii"), second.encode("ascii"))
