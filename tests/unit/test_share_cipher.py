"""Client-side share encryption (coffer.crypto.share_cipher) against known answers computed
with ``cryptography`` and ``hashlib`` alone (tests/unit/vectors/share.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from coffer.crypto.aead import KEY_BYTES, NONCE_BYTES, TAG_BYTES, open_envelope, seal
from coffer.crypto.share_cipher import (
    PROOF_CHARS,
    PROOF_LABEL,
    SHARE_AAD,
    decode_share_key,
    encode_share_key,
    open_share,
    seal_share,
    share_proof,
)
from coffer.domain.errors import DecryptionFailed

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "share.json").read_text(encoding="utf-8")
)
CASES: list[dict[str, Any]] = VECTORS["seal"]
IDS = [case["name"] for case in CASES]
FIRST = CASES[0]


def _bytes(case: dict[str, Any], name: str) -> bytes:
    return bytes.fromhex(case[name])


def test_labels_match_the_vectors() -> None:
    """The associated data and proof label are the documented constants."""
    assert SHARE_AAD == VECTORS["aad"].encode("ascii") == b"coffer/share/v1"
    assert PROOF_LABEL == VECTORS["proof_label"].encode("ascii") == b"coffer/share/proof/v1"
    assert PROOF_CHARS == 43


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_seal_with_the_share_aad_gives_the_known_envelope(case: dict[str, Any]) -> None:
    """aead.seal(key, plaintext, SHARE_AAD, nonce) is byte for byte the expected envelope."""
    envelope = seal(
        _bytes(case, "key"), _bytes(case, "plaintext"), SHARE_AAD, nonce=_bytes(case, "nonce")
    )
    assert envelope.hex() == case["envelope"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_open_share_opens_the_known_envelope(case: dict[str, Any]) -> None:
    """open_share with the link's key text returns the plaintext of the known envelope."""
    assert open_share(case["key_text"], _bytes(case, "envelope")) == _bytes(case, "plaintext")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_key_text_and_proof_match_the_known_answers(case: dict[str, Any]) -> None:
    """The key's link form and its proof are the expected unpadded URL-safe base64."""
    key = _bytes(case, "key")
    assert encode_share_key(key) == case["key_text"]
    assert decode_share_key(case["key_text"]) == key
    proof = share_proof(key)
    assert proof == case["proof"]
    assert len(proof) == PROOF_CHARS
    assert proof != case["key_text"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_seal_share_with_a_given_key_uses_the_envelope_format(case: dict[str, Any]) -> None:
    """seal_share returns the key text and an envelope (fresh nonce) that the plain AEAD
    opens under SHARE_AAD, and nothing else."""
    key, plaintext = _bytes(case, "key"), _bytes(case, "plaintext")
    key_text, envelope = seal_share(plaintext, key=key)
    assert key_text == case["key_text"]
    assert len(envelope) == 1 + NONCE_BYTES + len(plaintext) + TAG_BYTES
    assert envelope[0] == 1
    assert open_envelope(key, envelope, SHARE_AAD) == plaintext
    with pytest.raises(DecryptionFailed):
        open_envelope(key, envelope, b"coffer/share/v2")


def test_seal_share_draws_a_fresh_key_and_nonce_each_time() -> None:
    """Two seals of the same plaintext share neither key nor nonce; each opens its own."""
    first_key, first = seal_share(b"same text")
    second_key, second = seal_share(b"same text")
    assert first_key != second_key
    assert first[1:13] != second[1:13]
    assert len(decode_share_key(first_key)) == KEY_BYTES
    assert open_share(first_key, first) == open_share(second_key, second) == b"same text"
    with pytest.raises(DecryptionFailed):
        open_share(second_key, first)


def _flip(data: bytes, index: int) -> bytes:
    changed = bytearray(data)
    changed[index] ^= 0x01
    return bytes(changed)


SEALED = bytes.fromhex(CASES[1]["envelope"])
TAMPERED = {
    "version byte": _flip(SEALED, 0),
    "nonce": _flip(SEALED, 1),
    "ciphertext": _flip(SEALED, 1 + NONCE_BYTES),
    "tag": _flip(SEALED, len(SEALED) - 1),
    "truncated tag": SEALED[:-1],
    "header only": SEALED[: 1 + NONCE_BYTES],
    "empty": b"",
    "appended byte": SEALED + b"\x00",
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_open_share_rejects_every_tampering(name: str) -> None:
    """Any flipped bit (version, nonce, ciphertext, tag), truncation or extension raises
    DecryptionFailed, never a wrong plaintext."""
    assert open_share(CASES[1]["key_text"], SEALED) == bytes.fromhex(CASES[1]["plaintext"])
    with pytest.raises(DecryptionFailed):
        open_share(CASES[1]["key_text"], TAMPERED[name])


def test_open_share_rejects_another_key_and_another_aad() -> None:
    """The right envelope under another case's key, or sealed under a different associated
    data, does not open."""
    with pytest.raises(DecryptionFailed):
        open_share(CASES[2]["key_text"], _bytes(CASES[1], "envelope"))
    other_aad = seal(_bytes(FIRST, "key"), b"x", b"coffer/secret/v1", nonce=bytes(12))
    with pytest.raises(DecryptionFailed):
        open_share(FIRST["key_text"], other_aad)


KEY_TEXT = FIRST["key_text"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "A",
        KEY_TEXT[:-1],  # 42 characters: 31 bytes
        KEY_TEXT[:-2],
        KEY_TEXT + "A",  # 44 characters: 33 bytes
        KEY_TEXT + "AAAA",
        "A" * 40,  # 30 bytes
        "A" * 64,  # 48 bytes
        KEY_TEXT[:10] + "!" + KEY_TEXT[10:],
        KEY_TEXT[:10] + "." + KEY_TEXT[11:],
        KEY_TEXT + " ",
        " " + KEY_TEXT,
        KEY_TEXT + "\n",
        KEY_TEXT + "%",
        "é" * 43,
        "\x00" * 43,
    ],
)
def test_decode_share_key_rejects_bad_lengths_and_characters(text: str) -> None:
    """Anything but 43 URL-safe base64 characters of 32 bytes raises DecryptionFailed, and
    so does opening a share with it."""
    with pytest.raises(DecryptionFailed):
        decode_share_key(text)
    with pytest.raises(DecryptionFailed):
        open_share(text, _bytes(FIRST, "envelope"))


@pytest.mark.parametrize(
    "text",
    [
        KEY_TEXT + "!!",
        KEY_TEXT + "\n\n\n",
        KEY_TEXT + "=",
        KEY_TEXT + "====",
        KEY_TEXT[:10] + "+" + KEY_TEXT[11:],
        KEY_TEXT[:10] + "/" + KEY_TEXT[11:],
    ],
    ids=["trailing !!", "trailing newlines", "padding =", "padding ====", "plus", "slash"],
)
def test_decode_share_key_rejects_padding_and_foreign_characters(text: str) -> None:
    """Padding, '+', '/' and characters outside the alphabet are not unpadded URL-safe
    base64: refused."""
    with pytest.raises(DecryptionFailed):
        decode_share_key(text)


def test_decryption_failure_says_nothing_about_the_cause() -> None:
    """Bad key text and tampered envelope raise the same opaque error."""
    errors = []
    for key_text, envelope in (
        ("short", _bytes(FIRST, "envelope")),
        (KEY_TEXT, _flip(_bytes(FIRST, "envelope"), 20)),
    ):
        with pytest.raises(DecryptionFailed) as raised:
            open_share(key_text, envelope)
        errors.append((str(raised.value), raised.value.to_dict()))
    assert (
        errors[0]
        == errors[1]
        == (
            "decryption failed",
            {"code": "decryption_failed", "message": "decryption failed"},
        )
    )
