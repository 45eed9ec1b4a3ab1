"""Opaque API tokens: coffer_<kind>_<random>_<crc> (coffer.crypto.tokens)."""

from __future__ import annotations

import re
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.crypto.tokens import hash_token, mint_token, token_kind

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
TOKEN_RE = re.compile(r"coffer_([a-z]{2,8})_([0-9A-Za-z]{32})_([0-9A-Za-z]{6})")


def _base62(value: int) -> str:
    """Independent base62 encoder used to check the checksum."""
    out = ""
    while value:
        value, digit = divmod(value, 62)
        out = BASE62[digit] + out
    return out.rjust(6, "0")


@pytest.mark.parametrize("kind", ["pat", "sa", "abcdefgh"])
def test_minted_token_format(kind: str) -> None:
    """A minted token matches coffer_<kind>_<32 base62>_<6 base62> and reports its kind."""
    token = mint_token(kind)
    match = TOKEN_RE.fullmatch(token)
    assert match is not None
    assert match.group(1) == kind
    assert token_kind(token) == kind


def test_checksum_is_base62_crc32_of_body() -> None:
    """The last part is CRC32 of coffer_<kind>_<random>, base62, zero-padded to 6 chars."""
    token = mint_token("pat")
    body, crc = token.rsplit("_", 1)
    assert crc == _base62(zlib.crc32(body.encode("ascii")))


@pytest.mark.parametrize(
    "token",
    [
        # CRC32 0x37120419 = 923927577 -> "10Whlh" (six significant base62 digits)
        "coffer_pat_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_10Whlh",
        # CRC32 0x008c2bdc = 9186268 -> "cXlc", left-padded with "0" to "00cXlc"
        "coffer_pat_EEEEEEEEEEEEEEEEEEEEEEEEEEEEEEEE_00cXlc",
    ],
)
def test_known_token_checksums(token: str) -> None:
    """Pinned tokens (one needing zero padding) are accepted; a wrong checksum is not."""
    assert token_kind(token) == "pat"
    assert token_kind(token[:-6] + "000000") is None


@pytest.mark.parametrize("kind", ["", "a", "abcdefghi", "PAT", "p4t", "pa_t", "pät", "pat\n"])
def test_mint_rejects_bad_kind(kind: str) -> None:
    """A kind other than 2-8 lowercase ASCII letters is a programmer error (ValueError)."""
    with pytest.raises(ValueError, match="kind"):
        mint_token(kind)


def test_every_single_character_change_is_detected() -> None:
    """Replacing any one character of a token with any other candidate makes it invalid."""
    token = mint_token("pat")
    candidates = BASE62 + "_-. é\n"
    for index, original in enumerate(token):
        for replacement in candidates:
            if replacement == original:
                continue
            changed = token[:index] + replacement + token[index + 1 :]
            assert token_kind(changed) is None, (index, replacement)


def test_truncation_and_extension_are_detected() -> None:
    """Dropping or adding a character anywhere makes the token invalid."""
    token = mint_token("svc")
    for index in range(len(token)):
        assert token_kind(token[:index] + token[index + 1 :]) is None
        assert token_kind(token[:index] + "a" + token[index:]) is None
    assert token_kind(token + "\n") is None
    assert token_kind(" " + token) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "coffer",
        "coffer___",
        "coffer_pat__",
        "ghp_" + "a" * 36,
        "coffer_pat_" + "é" * 32 + "_000000",
        "coffer_pat_" + "a" * 32 + "_" + "0" * 6 + "0" * 10**6,
        "\x00" * 55,
        "\udcff" * 10,
    ],
    ids=[
        "empty",
        "prefix",
        "underscores",
        "no parts",
        "other vendor",
        "non-ascii",
        "huge",
        "nul",
        "surrogate",
    ],
)
def test_garbage_returns_none(garbage: str) -> None:
    """Malformed input of any kind returns None rather than raising."""
    assert token_kind(garbage) is None


@given(st.text(max_size=80))
def test_token_kind_never_raises(text: str) -> None:
    """token_kind returns None or a kind for arbitrary text, never raising."""
    result = token_kind(text)
    assert result is None or re.fullmatch(r"[a-z]{2,8}", result)


def test_token_kind_tolerates_non_strings() -> None:
    """Non-string input returns None."""
    assert token_kind(None) is None  # type: ignore[arg-type]
    assert token_kind(b"coffer_pat_x") is None  # type: ignore[arg-type]


def test_hash_is_stable_sha256_hex() -> None:
    """hash_token is the 64-char lowercase SHA-256 hex digest, the same on every call."""
    assert hash_token("coffer_pat_x") == hash_token("coffer_pat_x")
    assert hash_token("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    digest = hash_token(mint_token("pat"))
    assert re.fullmatch(r"[0-9a-f]{64}", digest)


def test_hash_differs_between_tokens() -> None:
    """Different tokens hash differently."""
    assert hash_token(mint_token("pat")) != hash_token(mint_token("pat"))


def test_minted_tokens_are_distinct() -> None:
    """1000 minted tokens (and their random parts) are all distinct."""
    tokens = [mint_token("pat") for _ in range(1000)]
    assert len(set(tokens)) == 1000
    assert len({t.split("_")[2] for t in tokens}) == 1000
