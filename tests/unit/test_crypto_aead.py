"""AES-256-GCM envelopes, HKDF-SHA256 and canonical associated data (coffer.crypto.aead/aad)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from coffer.crypto.aad import data_key_aad, secret_version_aad
from coffer.crypto.aead import (
    ENVELOPE_VERSION,
    KEY_BYTES,
    NONCE_BYTES,
    hkdf_sha256,
    new_key,
    open_envelope,
    seal,
)
from coffer.domain.errors import DecryptionFailed

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "crypto_vectors.json").read_text(encoding="utf-8")
)
TAMPER: dict[str, Any] = VECTORS["tamper"]
SV_FIELDS = ("org_id", "project_id", "environment_id", "key", "version", "key_version")


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


def _decode_parts(encoded: bytes) -> list[bytes]:
    """Splits a canonical AAD back into its length-prefixed parts (asserting it is exact)."""
    parts, at = [], 0
    while at < len(encoded):
        size = int.from_bytes(encoded[at : at + 4], "big")
        parts.append(encoded[at + 4 : at + 4 + size])
        at += 4 + size
    assert at == len(encoded)
    return parts


# -- HKDF ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["hkdf_sha256"], ids=_ids(VECTORS["hkdf_sha256"]))
def test_hkdf_matches_rfc5869(case: dict[str, Any]) -> None:
    """hkdf_sha256 reproduces the RFC 5869 known answers."""
    okm = hkdf_sha256(
        bytes.fromhex(case["ikm"]),
        info=bytes.fromhex(case["info"]),
        length=case["length"],
        salt=bytes.fromhex(case["salt"]),
    )
    assert okm.hex() == case["okm"]


def test_hkdf_no_salt_equals_empty_salt() -> None:
    """Omitting the salt gives the RFC 5869 test case 3 answer, like an empty salt."""
    case = VECTORS["hkdf_sha256"][1]
    assert case["salt"] == "" and case["info"] == ""
    okm = hkdf_sha256(bytes.fromhex(case["ikm"]), info=b"", length=case["length"])
    assert okm.hex() == case["okm"]


def test_hkdf_default_length_and_info_separation() -> None:
    """The default output is 32 bytes and different info strings give unrelated keys."""
    ikm = bytes(32)
    assert len(hkdf_sha256(ikm, info=b"a")) == 32
    assert hkdf_sha256(ikm, info=b"a") != hkdf_sha256(ikm, info=b"b")


@pytest.mark.parametrize("length", [0, -1, 255 * 32 + 1])
def test_hkdf_rejects_impossible_lengths(length: int) -> None:
    """Lengths outside 1..8160 are a programmer error (ValueError)."""
    with pytest.raises(ValueError, match="length"):
        hkdf_sha256(b"ikm", info=b"", length=length)


# -- seal / open --------------------------------------------------------------------------------


def test_constants() -> None:
    """The envelope constants are those DESIGN.md fixes: 256-bit keys, 96-bit nonces, v1."""
    assert (KEY_BYTES, NONCE_BYTES, ENVELOPE_VERSION) == (32, 12, 1)


def test_new_key_is_random_32_bytes() -> None:
    """new_key returns 32 bytes and two calls differ."""
    first, second = new_key(), new_key()
    assert len(first) == 32 and len(second) == 32
    assert first != second


@pytest.mark.parametrize("case", VECTORS["aes_256_gcm_seal"], ids=_ids(VECTORS["aes_256_gcm_seal"]))
def test_seal_known_answer(case: dict[str, Any]) -> None:
    """seal with a fixed nonce produces the expected envelope, and it opens again."""
    key, aad = bytes.fromhex(case["key"]), bytes.fromhex(case["aad"])
    plaintext = bytes.fromhex(case["plaintext"])
    envelope = seal(key, plaintext, aad, nonce=bytes.fromhex(case["nonce"]))
    assert envelope.hex() == case["envelope"]
    assert open_envelope(key, envelope, aad) == plaintext


def test_envelope_layout() -> None:
    """An envelope is version byte, 12-byte nonce, then ciphertext plus a 16-byte tag."""
    envelope = seal(new_key(), b"abc", b"aad")
    assert envelope[0] == ENVELOPE_VERSION
    assert len(envelope) == 1 + NONCE_BYTES + 3 + 16


def test_seal_uses_a_fresh_nonce_each_time() -> None:
    """Sealing the same plaintext twice gives different nonces and ciphertexts."""
    key = new_key()
    first, second = seal(key, b"same", b""), seal(key, b"same", b"")
    assert first[1:13] != second[1:13]
    assert first != second


@pytest.mark.parametrize(
    ("key", "nonce"), [(bytes(16), None), (bytes(33), None), (bytes(32), bytes(8))]
)
def test_seal_rejects_bad_key_or_nonce_length(key: bytes, nonce: bytes | None) -> None:
    """Wrong key or nonce lengths are programmer errors (ValueError) when sealing."""
    with pytest.raises(ValueError, match="bytes"):
        seal(key, b"x", b"", nonce=nonce)


def test_tamper_base_envelope_opens() -> None:
    """The untampered envelope behind the tamper cases opens, so those cases test tampering."""
    plaintext = open_envelope(
        bytes.fromhex(TAMPER["key"]),
        bytes.fromhex(TAMPER["envelope"]),
        bytes.fromhex(TAMPER["aad"]),
    )
    assert plaintext == bytes.fromhex(TAMPER["plaintext"])


@pytest.mark.parametrize("case", TAMPER["cases"], ids=_ids(TAMPER["cases"]))
def test_tampered_envelope_raises_decryption_failed(case: dict[str, Any]) -> None:
    """Each tampered envelope, wrong aad or wrong key raises the opaque DecryptionFailed."""
    key = bytes.fromhex(case.get("key", TAMPER["key"]))
    aad = bytes.fromhex(case.get("aad", TAMPER["aad"]))
    with pytest.raises(DecryptionFailed) as caught:
        open_envelope(key, bytes.fromhex(case["envelope"]), aad)
    assert caught.value.message == "decryption failed"
    # No cryptography exception is chained onto (or shown with) the opaque error.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_every_single_bit_flip_of_an_envelope_fails() -> None:
    """Flipping any one bit of a small envelope, header included, makes it fail to open."""
    key = new_key()
    envelope = seal(key, b"secret", b"aad")
    for index in range(len(envelope) * 8):
        flipped = bytearray(envelope)
        flipped[index // 8] ^= 1 << (index % 8)
        with pytest.raises(DecryptionFailed):
            open_envelope(key, bytes(flipped), b"aad")


@given(plaintext=st.binary(max_size=2048), aad=st.binary(max_size=256))
def test_round_trip_property(plaintext: bytes, aad: bytes) -> None:
    """Any plaintext sealed under any aad opens back to itself."""
    key = new_key()
    assert open_envelope(key, seal(key, plaintext, aad), aad) == plaintext


@given(plaintext=st.binary(max_size=256), aad=st.binary(max_size=64), data=st.data())
def test_single_bit_flip_property(plaintext: bytes, aad: bytes, data: st.DataObject) -> None:
    """Flipping any single bit anywhere in any envelope makes it fail to open."""
    key = new_key()
    envelope = bytearray(seal(key, plaintext, aad))
    bit = data.draw(st.integers(min_value=0, max_value=len(envelope) * 8 - 1), label="bit")
    envelope[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(DecryptionFailed):
        open_envelope(key, bytes(envelope), aad)


# -- associated data ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["aad"]["secret_version"])
def test_secret_version_aad_encoding(case: dict[str, Any]) -> None:
    """secret_version_aad produces the pinned canonical bytes."""
    assert secret_version_aad(**case["fields"]).hex() == case["expected"]


@pytest.mark.parametrize("case", VECTORS["aad"]["data_key"])
def test_data_key_aad_encoding(case: dict[str, Any]) -> None:
    """data_key_aad produces the pinned canonical bytes."""
    assert data_key_aad(**case["fields"]).hex() == case["expected"]


def test_shifted_field_boundary_is_not_ambiguous() -> None:
    """("ab", "c") and ("a", "bc") in adjacent fields encode differently (pinned vectors)."""
    cases = VECTORS["aad"]["secret_version"]
    left = next(c for c in cases if c["fields"]["environment_id"] == "ab")
    right = next(c for c in cases if c["fields"]["environment_id"] == "a")
    assert left["fields"]["key"] == "c" and right["fields"]["key"] == "bc"
    assert left["expected"] != right["expected"]
    assert secret_version_aad(**left["fields"]) != secret_version_aad(**right["fields"])


def test_labels_separate_domains() -> None:
    """The first part is the domain label, so the two AAD kinds cannot collide."""
    sv = secret_version_aad(
        org_id="o", project_id="p", environment_id="e", key="k", version=1, key_version=1
    )
    dk = data_key_aad(org_id="o", project_id="p", key_version=1)
    assert _decode_parts(sv)[0] == b"coffer/secret-version/v1"
    assert _decode_parts(dk)[0] == b"coffer/data-key/v1"


@pytest.mark.parametrize("bad", [True, 1.0, "1"])
def test_aad_rejects_non_int_versions(bad: object) -> None:
    """Versions must be real ints; bools, floats and strings are programmer errors."""
    with pytest.raises(TypeError, match="version"):
        data_key_aad(org_id="o", project_id="p", key_version=bad)  # type: ignore[arg-type]


_SV_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "org_id": st.text(max_size=12),
    "project_id": st.text(max_size=12),
    "environment_id": st.text(max_size=12),
    "key": st.text(max_size=12),
    "version": st.integers(min_value=0, max_value=10**12),
    "key_version": st.integers(min_value=0, max_value=10**6),
}
_sv_fields = st.fixed_dictionaries(_SV_STRATEGIES)


@given(fields=_sv_fields)
def test_secret_version_aad_decodes_back_to_its_fields(fields: dict[str, Any]) -> None:
    """Each encoding splits back into the label and exactly the given fields (it is injective)."""
    parts = _decode_parts(secret_version_aad(**fields))
    expected = [str(fields[name]).encode("utf-8") for name in SV_FIELDS]
    assert parts == [b"coffer/secret-version/v1", *expected]


@given(first=_sv_fields, second=_sv_fields)
def test_distinct_fields_give_distinct_aad(first: dict[str, Any], second: dict[str, Any]) -> None:
    """Two different field tuples never encode to the same associated data."""
    assume(first != second)
    assert secret_version_aad(**first) != secret_version_aad(**second)


@given(fields=_sv_fields, data=st.data())
def test_ciphertext_copied_to_another_row_fails(
    fields: dict[str, Any], data: st.DataObject
) -> None:
    """A value sealed for one secret version does not open when any one AAD field differs."""
    name = data.draw(st.sampled_from(SV_FIELDS), label="field")
    other = dict(fields, **{name: data.draw(_SV_STRATEGIES[name], label="new value")})
    assume(other[name] != fields[name])
    key = new_key()
    envelope = seal(key, b"postgres://user:pw@db/app", secret_version_aad(**fields))
    with pytest.raises(DecryptionFailed):
        open_envelope(key, envelope, secret_version_aad(**other))
