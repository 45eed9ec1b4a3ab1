"""KEK-sealed blobs name their root-key generation; KEKs re-seal, data keys reseal, and the
audit keys travel sealed under a KEK so the public key survives a root rotation."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given
from hypothesis import strategies as st

from coffer.crypto.aad import data_key_aad, mfa_secret_aad, secret_version_aad
from coffer.crypto.aead import seal
from coffer.crypto.audit_keys import SEALED_AAD, AuditKeys
from coffer.crypto.keys import (
    DataKey,
    KeyEncryptionKey,
    RootKey,
    generation_prefix,
    key_check_value,
    split_generation,
    tag_generation,
)
from coffer.domain.errors import DecryptionFailed

FIXED = bytes(range(32))
OTHER = bytes(range(32, 64))
AAD = data_key_aad(org_id="org_1", project_id="prj_1", key_version=1)
# KeyEncryptionKey(FIXED).check_value(): HKDF-SHA256(FIXED, info "coffer/kek-check/v1"), 16 bytes.
FIXED_KEK_CHECK = "fbb7417445e98f89ec320ad1edb45c19"
GENERATIONS = st.integers(min_value=1, max_value=2**32 - 1)


# -- generation tags ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("generation", "envelope", "tagged_hex"),
    [
        (1, bytes.fromhex("01aabb"), "c70000000101aabb"),
        (2, b"", "c700000002"),
        (258, bytes.fromhex("01"), "c70000010201"),
        (0x01020304, bytes.fromhex("ff"), "c701020304ff"),
        (2**32 - 1, bytes.fromhex("0100"), "c7ffffffff0100"),
    ],
)
def test_generation_tag_known_answers(generation: int, envelope: bytes, tagged_hex: str) -> None:
    """A tag is 0xC7 then the generation as 4 big-endian bytes, then the envelope unchanged;
    splitting gives both back and the blob starts with the generation's prefix."""
    tagged = tag_generation(generation, envelope)
    assert tagged.hex() == tagged_hex
    assert split_generation(tagged) == (generation, envelope)
    assert generation_prefix(generation).hex() == tagged_hex[:10]
    assert tagged.startswith(generation_prefix(generation))


def test_untagged_legacy_envelope_belongs_to_generation_one() -> None:
    """A blob sealed before generations existed (an AES-GCM envelope, version byte 0x01) is
    generation 1 and comes back whole, and it opens under generation 1's KEK."""
    legacy = KeyEncryptionKey(FIXED).wrap(DataKey(OTHER), AAD)
    assert legacy[0] == 1
    assert split_generation(legacy) == (1, legacy)
    assert KeyEncryptionKey(FIXED).unwrap(split_generation(legacy)[1], AAD) == DataKey(OTHER)


@pytest.mark.parametrize("blob", [b"\xc7", b"\xc7\x00", b"\xc7\x00\x00\x00"])
def test_tagged_blob_too_short_for_its_generation_fails(blob: bytes) -> None:
    """A blob that starts with the marker but cannot hold 4 generation bytes does not open."""
    with pytest.raises(DecryptionFailed):
        split_generation(blob)


def test_header_alone_is_an_empty_envelope() -> None:
    """Exactly the 5 header bytes split into the generation and an empty envelope, which then
    fails to open like any damaged envelope."""
    generation, envelope = split_generation(bytes.fromhex("c700000007"))
    assert (generation, envelope) == (7, b"")
    with pytest.raises(DecryptionFailed):
        KeyEncryptionKey(FIXED).open_small_secret(envelope, AAD)


@pytest.mark.parametrize("generation", [0, -1, 2**32, 2**40])
def test_tag_generation_refuses_out_of_range_generations(generation: int) -> None:
    """Generations are 1 to 2**32 - 1; anything else is a programming error."""
    with pytest.raises(ValueError, match=r"^generation must be between 1 and 2\*\*32 - 1$"):
        tag_generation(generation, b"\x01")
    with pytest.raises(ValueError, match="generation must be between"):
        generation_prefix(generation)


@given(generation=GENERATIONS, envelope=st.binary(max_size=64))
def test_tag_and_split_round_trip(generation: int, envelope: bytes) -> None:
    """split_generation undoes tag_generation for every generation and envelope."""
    assert split_generation(tag_generation(generation, envelope)) == (generation, envelope)


@given(first=GENERATIONS, second=GENERATIONS, envelope=st.binary(max_size=16))
def test_a_blob_starts_only_with_its_own_generations_prefix(
    first: int, second: int, envelope: bytes
) -> None:
    """A rotation finds what is left by prefix: a blob of one generation never starts with
    another generation's prefix."""
    blob = tag_generation(first, envelope)
    assert blob.startswith(generation_prefix(second)) == (first == second)


# -- KEK check value, rewrap, data-key reseal ------------------------------------------------


def test_kek_check_value_known_answer() -> None:
    """check_value is HKDF-SHA256 of the key with info coffer/kek-check/v1, 16 bytes, hex."""
    independent = HKDF(algorithm=SHA256(), length=16, salt=None, info=b"coffer/kek-check/v1")
    assert independent.derive(FIXED).hex() == FIXED_KEK_CHECK
    assert KeyEncryptionKey(FIXED).check_value() == FIXED_KEK_CHECK


def test_kek_check_value_tells_keys_apart_and_hides_them() -> None:
    """Different KEKs have different check values; a KEK's check value is not the
    root key's own check value (which names the root, not the KEK); derivation is stable."""
    root = RootKey(FIXED)
    kek = KeyEncryptionKey.derive(root)
    assert kek.check_value() != KeyEncryptionKey(OTHER).check_value()
    assert kek.check_value() != key_check_value(root)
    assert KeyEncryptionKey.derive(RootKey(FIXED)).check_value() == kek.check_value()


def test_rewrap_moves_a_sealed_value_to_another_kek() -> None:
    """What one KEK sealed, rewrap seals under another with the same associated data: the
    target opens it, the source no longer does, and the value is unchanged."""
    source, target = KeyEncryptionKey(FIXED), KeyEncryptionKey(OTHER)
    aad = mfa_secret_aad(user_id="01USER")
    envelope = source.seal_small_secret(b"JBSWY3DPEHPK3PXP", aad)
    moved = source.rewrap(envelope, aad, target)
    assert target.open_small_secret(moved, aad) == b"JBSWY3DPEHPK3PXP"
    with pytest.raises(DecryptionFailed):
        source.open_small_secret(moved, aad)
    with pytest.raises(DecryptionFailed):
        target.open_small_secret(moved, mfa_secret_aad(user_id="01OTHER"))


def test_rewrap_to_the_same_kek_uses_a_fresh_nonce() -> None:
    """Re-sealing under the same key gives different bytes that still open."""
    kek = KeyEncryptionKey(FIXED)
    envelope = kek.wrap(DataKey(OTHER), AAD)
    again = kek.rewrap(envelope, AAD, kek)
    assert again != envelope
    assert kek.unwrap(again, AAD) == DataKey(OTHER)


@pytest.mark.parametrize("wrong", ["kek", "aad", "tampered"])
def test_rewrap_of_what_does_not_open_fails(wrong: str) -> None:
    """Rewrap refuses (DecryptionFailed) a blob under another KEK, another AAD or altered."""
    source, target = KeyEncryptionKey(FIXED), KeyEncryptionKey(OTHER)
    envelope = source.wrap(DataKey(OTHER), AAD)
    other_aad = data_key_aad(org_id="org_1", project_id="prj_1", key_version=2)
    if wrong == "tampered":
        envelope = envelope[:-1] + bytes([envelope[-1] ^ 1])
    with pytest.raises(DecryptionFailed):
        (target if wrong == "kek" else source).rewrap(
            envelope, other_aad if wrong == "aad" else AAD, target
        )


def _version_aad(key_version: int) -> bytes:
    return secret_version_aad(
        org_id="org_1",
        project_id="prj_1",
        environment_id="env_1",
        key="db/password",
        version=3,
        key_version=key_version,
    )


def test_data_key_reseal_moves_a_version_to_the_new_key_and_aad() -> None:
    """reseal opens under the old key and AAD (key version 1) and seals under the new key and
    AAD (key version 2): only that pair opens the result, and the value is unchanged."""
    old, new = DataKey(FIXED), DataKey(OTHER)
    envelope = old.seal(b"hunter2", _version_aad(1))
    moved = old.reseal(envelope, _version_aad(1), new, _version_aad(2))
    assert new.open(moved, _version_aad(2)) == b"hunter2"
    for key, aad in ((new, _version_aad(1)), (old, _version_aad(2)), (old, _version_aad(1))):
        with pytest.raises(DecryptionFailed):
            key.open(moved, aad)


def test_data_key_reseal_of_what_does_not_open_fails() -> None:
    """reseal of a version under another key or AAD raises DecryptionFailed."""
    old, new = DataKey(FIXED), DataKey(OTHER)
    envelope = old.seal(b"hunter2", _version_aad(1))
    with pytest.raises(DecryptionFailed):
        new.reseal(envelope, _version_aad(1), new, _version_aad(2))
    with pytest.raises(DecryptionFailed):
        old.reseal(envelope, _version_aad(2), new, _version_aad(2))


# -- audit keys sealed under a KEK -----------------------------------------------------------


def test_audit_keys_unseal_under_another_kek_after_reseal() -> None:
    """Audit keys derived from the first KEK, sealed under a second one, unseal to the same
    keys: same public key, same MACs, signatures the public key accepts."""
    first, second = KeyEncryptionKey(FIXED), KeyEncryptionKey(OTHER)
    keys = AuditKeys.derive(first)
    opened = AuditKeys.unseal(second, keys.seal(second))
    assert opened.public.raw == keys.public.raw
    assert opened.mac(b"entry") == keys.mac(b"entry")
    assert keys.public.verify(opened.sign(b"checkpoint"), b"checkpoint")
    assert AuditKeys.derive(second).public.raw != keys.public.raw


def test_sealed_audit_keys_do_not_open_under_a_wrong_kek() -> None:
    """Unsealing with another KEK, or after one bit changed, raises DecryptionFailed."""
    kek = KeyEncryptionKey(FIXED)
    sealed = AuditKeys.derive(kek).seal(kek)
    with pytest.raises(DecryptionFailed):
        AuditKeys.unseal(KeyEncryptionKey(OTHER), sealed)
    with pytest.raises(DecryptionFailed):
        AuditKeys.unseal(kek, sealed[:-1] + bytes([sealed[-1] ^ 1]))


def test_sealed_blob_of_the_wrong_size_is_not_audit_keys() -> None:
    """A blob that opens under the KEK with the audit AAD but does not hold two 32-byte keys
    is refused with DecryptionFailed."""
    kek = KeyEncryptionKey(FIXED)
    with pytest.raises(DecryptionFailed):
        AuditKeys.unseal(kek, seal(FIXED, b"\x00" * 63, SEALED_AAD))


def test_sealed_audit_keys_hold_no_readable_key_material() -> None:
    """The sealed blob contains neither the MAC key nor the signing seed in the clear."""
    kek = KeyEncryptionKey(FIXED)
    keys = AuditKeys.derive(kek)
    sealed = keys.seal(kek)
    assert keys._mac_key not in sealed
    assert keys._seed not in sealed
    assert "********" in repr(keys)
    assert keys._seed.hex() not in repr(keys)
