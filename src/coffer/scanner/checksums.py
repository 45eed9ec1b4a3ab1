"""Offline verification of token formats that carry their own checksum.

- ``github``: GitHub's ``gh?_`` tokens and npm's ``npm_`` tokens end in the CRC32 of the 30
  random characters after the 4-character prefix, in base62 (``0-9A-Za-z``), left-padded with
  ``0`` to 6 characters.
- ``coffer``: coffer's own ``coffer_<kind>_<random>_<crc>`` (see ``coffer.crypto.tokens``).
"""

from __future__ import annotations

from collections.abc import Callable

from coffer.crypto.tokens import base62_crc32, token_kind

_PREFIX_CHARS = 4
_CRC_CHARS = 6

__all__ = ["VERIFIERS", "base62_crc32", "coffer_checksum_ok", "github_checksum_ok"]


def github_checksum_ok(token: str) -> bool:
    """True when ``token`` (``ghp_``, ``gho_``, ``ghu_``, ``ghs_``, ``ghr_``, ``npm_``: 4-character
    prefix, 30 random characters, 6 checksum characters) carries a correct checksum."""
    if len(token) != _PREFIX_CHARS + 30 + _CRC_CHARS or not token.isascii():
        return False
    body, crc = token[_PREFIX_CHARS:-_CRC_CHARS], token[-_CRC_CHARS:]
    return base62_crc32(body) == crc


def coffer_checksum_ok(token: str) -> bool:
    """True when ``token`` is a well-formed coffer token with a correct checksum."""
    return token_kind(token) is not None


VERIFIERS: dict[str, Callable[[str], bool]] = {
    "github": github_checksum_ok,
    "coffer": coffer_checksum_ok,
}
