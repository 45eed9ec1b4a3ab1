"""The public audit record, its canonical bytes and export lines (coffer.audit.records), signed
checkpoints (coffer.audit.checkpoints) and the audit keys (coffer.crypto.audit_keys)."""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from coffer.audit.checkpoints import MESSAGE_HEADER, Checkpoint, sign_checkpoint, signed_message
from coffer.audit.records import (
    RECORD_COLUMNS,
    canonical_bytes,
    canonical_from_values,
    export_line,
    record_from_values,
    split_export_line,
)
from coffer.crypto.audit_keys import AuditKeys, AuditPublicKey
from coffer.crypto.merkle import leaf_hash
from coffer.domain.errors import InvalidInput
from coffer.storage.json_text import canonical_json

MAC_KEY = bytes(range(32))
SEED = bytes(range(100, 132))
KEYS = AuditKeys(MAC_KEY, SEED)
OTHER_KEYS = AuditKeys(MAC_KEY, bytes(range(200, 232)))

# Every character, including control characters, quotes, backslashes, lone surrogates and
# characters outside the BMP.
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
NASTY = st.sampled_from(
    ["", '"', "\\", "\x00", "\n", "\x1b[31m", "\u2028", "é", "\U0001f600", "\ud800", "a|b=c]"]
)
TEXT = st.one_of(ANY_TEXT, NASTY)
OPTIONAL_TEXT = st.one_of(st.none(), TEXT)
METADATA_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
METADATA = st.dictionaries(TEXT, METADATA_VALUE, max_size=5)
TIMESTAMP = st.floats(min_value=0, max_value=1e11, allow_nan=False, allow_infinity=False)
INDEX = st.one_of(st.none(), st.integers(min_value=0, max_value=2**62))


@st.composite
def row_values(draw: st.DrawFn) -> list[Any]:
    """Values of one audit_log row in RECORD_COLUMNS order (metadata as stored: canonical
    JSON text)."""
    return [
        draw(INDEX),
        draw(TEXT),  # id
        draw(TIMESTAMP),
        draw(TEXT),  # action
        draw(OPTIONAL_TEXT),  # actor_id
        draw(OPTIONAL_TEXT),  # actor_kind
        draw(OPTIONAL_TEXT),  # org_id
        draw(OPTIONAL_TEXT),  # project
        draw(OPTIONAL_TEXT),  # environment
        draw(OPTIONAL_TEXT),  # key
        draw(OPTIONAL_TEXT),  # source_ip
        draw(OPTIONAL_TEXT),  # user_agent
        draw(TEXT),  # result
        canonical_json(draw(METADATA)),
    ]


def _record_values(**changes: Any) -> list[Any]:
    base: dict[str, Any] = {
        "leaf_index": 7,
        "id": "01JD3ZQ3T0000000000000000A",
        "timestamp": 1764000000.123456,
        "action": "secret.read",
        "actor_id": "01JD3ZQ3T0000000000000000U",
        "actor_kind": "user",
        "org_id": "01JD3ZQ3T0000000000000000O",
        "project": "web",
        "environment": "production",
        "key": "DB_URL",
        "source_ip": "127.0.0.1",
        "user_agent": "curl/8",
        "result": "success",
        "metadata": '{"version":3}',
    }
    base.update(changes)
    return [base[name] for name in RECORD_COLUMNS]


# -- Canonical bytes --------------------------------------------------------------------------


@given(values=row_values())
def test_fast_canonical_bytes_equal_the_record_encoding(values: list[Any]) -> None:
    """canonical_from_values (the sealer's fast path) gives exactly the canonical encoding of
    the public record for any text, including control characters, quotes, backslashes,
    non-ASCII and null fields."""
    index = values[0]
    fast = canonical_from_values(values, index)
    assert fast == canonical_bytes(record_from_values(values))
    assert fast.isascii()
    assert b"\n" not in fast and b"\r" not in fast
    assert json.loads(fast) == json.loads(canonical_bytes(record_from_values(values)))


@given(values=row_values(), index=st.integers(min_value=0, max_value=2**40))
def test_canonical_bytes_use_the_given_index(values: list[Any], index: int) -> None:
    """The stored index is ignored in favour of the one given, so an entry's MAC (index null)
    and its leaf (its index) cover the same record."""
    as_written = canonical_from_values(values, None)
    sealed = canonical_from_values(values, index)
    assert json.loads(as_written)["index"] is None
    assert json.loads(sealed)["index"] == index
    assert {**json.loads(sealed), "index": None} == json.loads(as_written)


def test_canonical_bytes_known_answer() -> None:
    """A fixed record has exactly the documented canonical form: sorted keys, compact, ASCII."""
    values = _record_values(key='k"\\\n\x1bé', metadata='{"via":"get","version":3}')
    assert canonical_from_values(values, 7) == (
        b'{"action":"secret.read","actor":{"id":"01JD3ZQ3T0000000000000000U","kind":"user"},'
        b'"environment":"production","id":"01JD3ZQ3T0000000000000000A","index":7,'
        b'"key":"k\\"\\\\\\n\\u001b\\u00e9","metadata":{"via":"get","version":3},'
        b'"org":"01JD3ZQ3T0000000000000000O","project":"web","result":"success",'
        b'"source_ip":"127.0.0.1","time":1764000000.123456,"user_agent":"curl/8"}'
    )


def test_record_from_values_has_every_public_key() -> None:
    """A record always carries the thirteen public keys, nulls included, with the actor as an
    object and metadata parsed."""
    values = _record_values(actor_id=None, actor_kind="system", project=None, key=None)
    record = record_from_values(values)
    assert set(record) == {
        "index", "id", "time", "action", "actor", "org", "project", "environment", "key",
        "source_ip", "user_agent", "result", "metadata",
    }  # fmt: skip
    assert record["actor"] == {"id": None, "kind": "system"}
    assert record["project"] is None and record["key"] is None
    assert record["metadata"] == {"version": 3}


# -- Export lines -----------------------------------------------------------------------------


@given(values=row_values(), index=st.integers(min_value=0, max_value=2**40))
def test_export_line_round_trips(values: list[Any], index: int) -> None:
    """split_export_line returns the leaf hash and canonical bytes that export_line joined,
    and the line is one line of JSON holding the record and its leaf."""
    canonical = canonical_from_values(values, index)
    leaf = leaf_hash(canonical)
    line = export_line(canonical, leaf)
    assert split_export_line(line) == (leaf, canonical)
    assert b"\n" not in line
    parsed = json.loads(line)
    assert parsed.pop("_leaf") == leaf.hex()
    assert parsed == json.loads(canonical)


@pytest.mark.parametrize(
    "line",
    [
        b'{"type":"checkpoint","seq":1}',
        b'{"type":"header","format":"coffer-audit-export/v1"}',
        b'{"_leaf":"zz' + b"0" * 62 + b'","id":"x"}',
        b'{"_leaf":"' + b"0" * 63 + b'","id":"x"}',
        b'{"_leaf":"' + b"0" * 64 + b'"}',
        b"",
        b"not json at all",
    ],
    ids=["checkpoint", "header", "non-hex-leaf", "short-leaf", "no-record", "empty", "junk"],
)
def test_split_export_line_refuses_other_lines(line: bytes) -> None:
    """A checkpoint, header or damaged line is not taken for an entry."""
    assert split_export_line(line) is None


# -- Checkpoints ------------------------------------------------------------------------------

ROOT = bytes(range(32))
FRONTIER = (bytes(range(1, 33)),)


def _checkpoint(keys: AuditKeys = KEYS) -> Checkpoint:
    return sign_checkpoint(
        keys, seq=4, tree_size=17, root_hash=ROOT, timestamp=1764000000.1234567, frontier=FRONTIER
    )


def test_signed_message_names_every_signed_field() -> None:
    """The signed text is the header, key id, seq, size, base64 root and microsecond time,
    one per line."""
    message = signed_message(4, 17, ROOT, 1764000000.123457, "abcdef0123456789")
    assert message == (
        f"{MESSAGE_HEADER}\nabcdef0123456789\n4\n17\n"
        f"{base64.b64encode(ROOT).decode()}\n1764000000.123457\n"
    ).encode("ascii")
    assert MESSAGE_HEADER == "coffer audit checkpoint v1"


def test_signed_checkpoint_verifies_with_its_public_key_only() -> None:
    """A signed checkpoint verifies under the signer's public key (also when read back from
    JSON) and not under another key."""
    checkpoint = _checkpoint()
    assert checkpoint.key_id == KEYS.public.key_id
    assert checkpoint.timestamp == 1764000000.123457
    assert checkpoint.signed_message() == signed_message(
        4, 17, ROOT, 1764000000.123457, KEYS.public.key_id
    )
    assert checkpoint.signature_valid(KEYS.public)
    assert KEYS.public.verify(checkpoint.signature, checkpoint.signed_message())
    assert not checkpoint.signature_valid(OTHER_KEYS.public)
    assert not _checkpoint(OTHER_KEYS).signature_valid(KEYS.public)
    again = Checkpoint.from_json(json.loads(json.dumps(checkpoint.to_json())))
    assert again == checkpoint
    assert again.signature_valid(KEYS.public)


EDITS: dict[str, Any] = {
    "seq": 5,
    "tree_size": 18,
    "root_hash": bytes(32),
    "timestamp": 1764000001.123457,
    "key_id": OTHER_KEYS.public.key_id,
    "signature": bytes(64),
}


@pytest.mark.parametrize("field", EDITS)
def test_edited_checkpoint_no_longer_verifies(field: str) -> None:
    """Changing any signed field of a checkpoint (or its signature) makes it fail to verify,
    whether edited in memory or in its JSON form."""
    checkpoint = _checkpoint()
    edited = dataclasses.replace(checkpoint, **{field: EDITS[field]})
    assert not edited.signature_valid(KEYS.public)
    data = checkpoint.to_json()
    value = EDITS[field]
    if field == "root_hash":
        value = value.hex()
    elif field == "signature":
        value = base64.b64encode(value).decode()
    data[field] = value
    assert not Checkpoint.from_json(data).signature_valid(KEYS.public)


def test_flipping_any_signature_bit_breaks_the_checkpoint() -> None:
    """No single-bit change of the signature verifies."""
    checkpoint = _checkpoint()
    for bit in range(0, len(checkpoint.signature) * 8, 7):
        damaged = bytearray(checkpoint.signature)
        damaged[bit // 8] ^= 1 << (bit % 8)
        edited = dataclasses.replace(checkpoint, signature=bytes(damaged))
        assert not edited.signature_valid(KEYS.public)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"tree_size": "3"}, "tree_size"),
        ({"root_hash": "xyz"}, "root_hash"),
        ({"signature": "***"}, "signature"),
        ({"timestamp": None}, "timestamp"),
        ({"key_id": 5}, "key_id"),
    ],
)
def test_malformed_checkpoint_json_is_refused(change: dict[str, Any], field: str) -> None:
    """Checkpoint.from_json refuses a missing or malformed field with InvalidInput."""
    data = {**_checkpoint().to_json(), **change}
    with pytest.raises(InvalidInput, match="checkpoint"):
        Checkpoint.from_json(data)
    del data[field]
    with pytest.raises(InvalidInput, match="checkpoint"):
        Checkpoint.from_json(data)
    with pytest.raises(InvalidInput, match="checkpoint"):
        Checkpoint.from_json([1, 2])


# -- Keys -------------------------------------------------------------------------------------


def test_audit_keys_repr_hides_key_material() -> None:
    """repr and str of AuditKeys show the public key id only, never the MAC key or signing
    seed in any encoding, and the keys refuse to pickle."""
    shown = repr(KEYS) + str(KEYS) + f"{KEYS}" + repr([KEYS])
    assert KEYS.public.key_id in shown
    for secret in (MAC_KEY, SEED):
        for form in (
            secret.hex(),
            secret.hex().upper(),
            base64.b64encode(secret).decode(),
            repr(secret),
            str(list(secret)),
        ):
            assert form not in shown
    with pytest.raises(TypeError):
        pickle.dumps(KEYS)


def test_audit_keys_mac_is_keyed() -> None:
    """The MAC depends on the key and the message, and mac_matches refuses a missing tag."""
    tag = KEYS.mac(b"message")
    assert KEYS.mac_matches(b"message", tag)
    assert not KEYS.mac_matches(b"messagE", tag)
    assert not KEYS.mac_matches(b"message", None)
    assert not AuditKeys(bytes(32), SEED).mac_matches(b"message", tag)


def test_public_key_reads_pem_and_base64() -> None:
    """from_text accepts the PEM block and the base64 of the raw key (with surrounding
    whitespace), both giving the same key as the one that signs."""
    public = KEYS.public
    raw = (
        Ed25519PrivateKey.from_private_bytes(SEED)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    assert public.raw == raw
    for text in (public.to_pem(), public.to_base64(), f"\n  {public.to_pem()}  \n"):
        read = AuditPublicKey.from_text(text)
        assert read.raw == raw
        assert read.key_id == public.key_id
    assert public.to_base64() == base64.b64encode(raw).decode()
    assert AuditPublicKey.from_text(f" {base64.b64encode(raw).decode()}\n").raw == raw


def _ec_pem() -> str:
    key = generate_private_key(SECP256R1()).public_key()
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


JUNK = {
    "empty": "",
    "words": "not a key",
    "short-base64": base64.b64encode(bytes(31)).decode(),
    "long-base64": base64.b64encode(bytes(33)).decode(),
    "bad-base64": "****" * 11,
    "hex": bytes(32).hex(),
    "pem-garbage": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    "pem-truncated": KEYS.public.to_pem()[:60],
    "private-key-pem": (
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----"
    ),
    "ec-key-pem": _ec_pem(),
    "non-ascii-pem": "-----BEGIN PUBLIC KEY-----\né\n-----END PUBLIC KEY-----",
}


@pytest.mark.parametrize("text", JUNK.values(), ids=JUNK.keys())
def test_public_key_refuses_junk(text: str) -> None:
    """Anything but an Ed25519 public key in PEM or base64 is refused with InvalidInput
    naming the public key."""
    with pytest.raises(InvalidInput, match="public key"):
        AuditPublicKey.from_text(text)


def test_public_key_needs_32_bytes() -> None:
    """An AuditPublicKey of a raw value that is not 32 bytes is refused with InvalidInput."""
    with pytest.raises(InvalidInput, match="32 bytes"):
        AuditPublicKey(bytes(31))
