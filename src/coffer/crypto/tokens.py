"""Opaque API tokens: ``coffer_<kind>_<random>_<crc>``.

``random`` is 32 base62 characters (about 190 bits); ``crc`` is the CRC32 of
``coffer_<kind>_<random>`` in base62, left-padded with ``0`` to 6 characters, so a scanner can
recognise a coffer token with no false positives and any single-character typo is detected.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

PREFIX = "coffer"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_CHARS = 32
CRC_CHARS = 6
_KIND = re.compile(r"[a-z]{2,8}")
_TOKEN = re.compile(
    rf"({PREFIX}_([a-z]{{2,8}})_[0-9A-Za-z]{{{RANDOM_CHARS}}})_([0-9A-Za-z]{{{CRC_CHARS}}})"
)
_MAX_TOKEN_CHARS = len(PREFIX) + 1 + 8 + 1 + RANDOM_CHARS + 1 + CRC_CHARS


def base62_crc32(text: str) -> str:
    """Returns the CRC32 of ASCII ``text`` in base62 (``0-9A-Za-z``), left-padded with ``0`` to
    6 characters: the checksum of coffer's tokens, and of GitHub's and npm's (over their random
    part), which the scanner verifies."""
    value = zlib.crc32(text.encode("ascii"))
    digits = []
    while value:
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits)).rjust(CRC_CHARS, "0")


def mint_token(kind: str) -> str:
    """Returns a new random token of ``kind``.

    Raises ``ValueError`` when ``kind`` is not 2 to 8 lowercase ASCII letters.
    """
    if not _KIND.fullmatch(kind):
        raise ValueError("token kind must be 2 to 8 lowercase ASCII letters")
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_CHARS))
    body = f"{PREFIX}_{kind}_{random_part}"
    return f"{body}_{base62_crc32(body)}"


def token_kind(token: str) -> str | None:
    """Returns the kind of ``token`` when it is well formed with a correct checksum, else None.

    Never raises, whatever ``token`` holds (non-ASCII, huge, not a string).
    """
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
        return None
    match = _TOKEN.fullmatch(token)
    if match is None or base62_crc32(match.group(1)) != match.group(3):
        return None
    return match.group(2)


def hash_token(token: str) -> str:
    """Returns the SHA-256 hex digest (64 characters) of the UTF-8 ``token``, the stored form.

    A fast unsalted hash is right here: tokens carry about 190 random bits, so the digest
    cannot be brute-forced, and lookup by hash needs it to be deterministic.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


LINK_TOKEN_BYTES = 18  # 144 bits, 24 URL-safe characters


def mint_link_token() -> str:
    """Returns a new random token for a share link's path (URL-safe base64, 24 characters).
    The server keeps only its ``hash_token``."""
    return secrets.token_urlsafe(LINK_TOKEN_BYTES)
