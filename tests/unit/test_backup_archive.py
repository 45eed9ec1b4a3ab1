"""The backup archive format: "COFFERBK", a u32 header length, the header's JSON, then
AES-256-GCM chunks (flag byte, u32 length, ciphertext) under a fresh key sealed by the KEK.

Round trips of every interesting payload size, the framing checked byte for byte against an
independent decryption, and every attack on the file refused with its exact message: edited
header, chunk body or flag, reordered, dropped, spliced, truncated or appended chunks, an
archive key sealed under another KEK, wrong magic bytes."""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coffer.crypto.aad import mfa_secret_aad
from coffer.crypto.backup_archive import (
    BACKUP_KEY_AAD,
    CHUNK_BYTES,
    FORMAT_VERSION,
    MAGIC,
    MAX_CHUNK_BYTES,
    MAX_HEADER_BYTES,
    ArchiveWriter,
    read_header,
    read_payload,
)
from coffer.crypto.keys import KeyEncryptionKey
from coffer.domain.errors import DecryptionFailed, InvalidInput

KEK = KeyEncryptionKey(bytes(range(32)))
OTHER_KEK = KeyEncryptionKey(bytes(range(32, 64)))
HEADER = {"created_at": 1700000000.5, "note": "unit", "tables": [["t", ["a", "b"]]]}
PREFIX = "the backup file is not valid: "
WRONG_MAGIC = "it is not a coffer backup (wrong magic bytes)"
IN_HEADER = "it ends inside its header (truncated)"
BEFORE_LAST = "it ends before its last chunk (truncated)"
UNREADABLE = "its header is unreadable or of an unknown format"
APPENDED = "it has data after its last chunk (appended)"


def integrity(index: int) -> str:
    """The reason given for chunk ``index`` failing its tag."""
    return f"chunk {index} fails its integrity check (edited or reordered)"


def inside(index: int) -> str:
    """The reason given for a file that ends in the middle of chunk ``index``."""
    return f"it ends inside chunk {index} (truncated)"


def payload_of(size: int, seed: int = 7) -> bytes:
    """``size`` incompressible bytes (so each chunk's ciphertext is about its plaintext's size)."""
    return random.Random(seed).randbytes(size)


def make_archive(
    payload: bytes, *, kek: KeyEncryptionKey = KEK, pieces: int = 1, header: Any = None
) -> bytes:
    """The archive of ``payload`` written in ``pieces`` calls to ``write``."""
    out = io.BytesIO()
    writer = ArchiveWriter(out, dict(HEADER if header is None else header), kek)
    step = max(1, -(-len(payload) // pieces))
    for start in range(0, len(payload), step):
        writer.write(payload[start : start + step])
    writer.close()
    return out.getvalue()


def read_archive(data: bytes, kek: KeyEncryptionKey = KEK) -> bytes:
    """The whole payload of ``data``, read as a restore reads it (to the end)."""
    source = io.BytesIO(data)
    header, header_bytes = read_header(source)
    return b"".join(read_payload(source, header, header_bytes, kek))


def refusal(data: bytes, kek: KeyEncryptionKey = KEK) -> str:
    """The reason an archive is refused with (asserting InvalidInput naming ``file``)."""
    with pytest.raises(InvalidInput) as raised:
        read_archive(data, kek)
    assert raised.value.field == "file"
    assert raised.value.message.startswith(PREFIX), raised.value.message
    return raised.value.message.removeprefix(PREFIX)


@dataclass(frozen=True)
class Frame:
    """One chunk as stored: where it starts, its flag, its ciphertext."""

    offset: int
    flag: int
    body: bytes

    @property
    def end(self) -> int:
        """The offset just past the chunk."""
        return self.offset + 5 + len(self.body)

    @property
    def raw(self) -> bytes:
        """The chunk's stored bytes (frame head and body)."""
        return struct.pack(">BI", self.flag, len(self.body)) + self.body


@dataclass(frozen=True)
class Layout:
    """An archive parsed independently of the code under test."""

    header_bytes: bytes
    frames: list[Frame]

    @property
    def header_end(self) -> int:
        """The offset of the first chunk."""
        return len(MAGIC) + 4 + len(self.header_bytes)

    @property
    def header(self) -> dict[str, Any]:
        """The header's JSON."""
        parsed: dict[str, Any] = json.loads(self.header_bytes)
        return parsed

    def rebuild(
        self, header_bytes: bytes | None = None, frames: list[Frame] | None = None
    ) -> bytes:
        """The archive with its header or chunks replaced."""
        head = self.header_bytes if header_bytes is None else header_bytes
        chunks = self.frames if frames is None else frames
        return MAGIC + struct.pack(">I", len(head)) + head + b"".join(f.raw for f in chunks)


def layout(data: bytes) -> Layout:
    """Parses ``data`` by the documented format (and checks it ends after the last chunk)."""
    assert data[: len(MAGIC)] == MAGIC
    (length,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
    offset = len(MAGIC) + 4 + length
    header_bytes = data[len(MAGIC) + 4 : offset]
    frames: list[Frame] = []
    while offset < len(data):
        flag, size = struct.unpack(">BI", data[offset : offset + 5])
        frames.append(Frame(offset, flag, data[offset + 5 : offset + 5 + size]))
        offset = frames[-1].end
    assert offset == len(data)
    return Layout(header_bytes, frames)


def canonical(header: dict[str, Any]) -> bytes:
    """A header as the writer stores it: sorted keys, no spaces."""
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode()


def flipped(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    """``data`` with the byte at ``offset`` XORed with ``mask``."""
    return data[:offset] + bytes([data[offset] ^ mask]) + data[offset + 1 :]


# -- round trips and framing ----------------------------------------------------------------

SIZES = [
    0,
    1,
    1000,
    CHUNK_BYTES - 1,
    CHUNK_BYTES,
    CHUNK_BYTES + 1,
    2 * CHUNK_BYTES,
    2 * CHUNK_BYTES + 10,
]


@pytest.mark.parametrize("size", SIZES)
def test_every_payload_size_round_trips_in_full_chunks_and_one_last(size: int) -> None:
    """A payload of any size (none, one byte, exactly one or two chunks, one byte either
    side) reads back exactly, stored as full CHUNK_BYTES chunks flagged 0 and one last
    chunk (possibly empty) flagged 1."""
    payload = payload_of(size)
    data = make_archive(payload)
    assert read_archive(data) == payload
    frames = layout(data).frames
    full, rest = divmod(size, CHUNK_BYTES)
    assert [f.flag for f in frames] == [0] * full + [1]
    assert len(frames) == full + 1
    # Each chunk is its compressed plaintext plus the 16-byte tag: incompressible data only
    # grows by zlib's framing, never beyond the frame limit.
    assert all(len(f.body) <= MAX_CHUNK_BYTES for f in frames)
    if rest == 0:
        assert len(frames[-1].body) == len(zlib.compress(b"", 1)) + 16


@pytest.mark.parametrize("pieces", [1, 3, 1000])
def test_writes_in_pieces_chunk_exactly_like_one_write(pieces: int) -> None:
    """However the payload is handed to ``write``, the chunks hold the same plaintexts."""
    payload = payload_of(2 * CHUNK_BYTES + 777, seed=pieces)
    data = make_archive(payload, pieces=pieces)
    assert read_archive(data) == payload
    assert [len(p) for p in chunk_plaintexts(data)] == [CHUNK_BYTES, CHUNK_BYTES, 777]


def chunk_plaintexts(data: bytes, kek: KeyEncryptionKey = KEK) -> list[bytes]:
    """Decrypts every chunk independently of the reader, by the documented recipe: the
    archive key sealed in the header under the KEK with AAD "coffer/backup-key/v1"; chunk i
    under nonce i (96-bit big-endian) with AAD SHA-256(header) + i (64-bit big-endian) + flag
    byte; each plaintext zlib-compressed."""
    parts = layout(data)
    key = kek.open_small_secret(bytes.fromhex(parts.header["archive_key"]), BACKUP_KEY_AAD)
    assert len(key) == 32
    digest = hashlib.sha256(parts.header_bytes).digest()
    plaintexts = []
    for index, frame in enumerate(parts.frames):
        aad = digest + index.to_bytes(8, "big") + bytes([frame.flag])
        compressed = AESGCM(key).decrypt(index.to_bytes(12, "big"), frame.body, aad)
        plaintexts.append(zlib.decompress(compressed))
    return plaintexts


def test_the_framing_is_exactly_as_documented() -> None:
    """Magic "COFFERBK", the header's length as u32 big-endian, the caller's header plus
    format 1 and the sealed archive key as sorted compact JSON, then chunks that an
    independent implementation of the recipe decrypts to the payload."""
    payload = payload_of(CHUNK_BYTES + 5)
    data = make_archive(payload)
    parts = layout(data)
    assert data[:8] == b"COFFERBK"
    assert data[8:12] == len(parts.header_bytes).to_bytes(4, "big")
    header = parts.header
    assert set(header) == {*HEADER, "format", "archive_key"}
    assert header["format"] == FORMAT_VERSION == 1
    assert {k: header[k] for k in HEADER} == HEADER
    assert parts.header_bytes == canonical(header)
    assert [f.flag for f in parts.frames] == [0, 1]
    assert b"".join(chunk_plaintexts(data)) == payload


def test_each_archive_has_its_own_key_and_never_shows_it() -> None:
    """Two archives of the same payload under the same KEK have different archive keys and
    ciphertexts (nonces restart at 0 only under a fresh key); the raw key appears nowhere in
    the file, and the writer's repr hides it."""
    payload = payload_of(5000)
    first, second = make_archive(payload), make_archive(payload)
    keys = [layout(d).header["archive_key"] for d in (first, second)]
    assert keys[0] != keys[1]
    assert layout(first).frames[0].body != layout(second).frames[0].body
    raw = KEK.open_small_secret(bytes.fromhex(keys[0]), BACKUP_KEY_AAD)
    assert raw not in first
    assert raw.hex().encode() not in first
    assert payload[:64] not in first
    writer = ArchiveWriter(io.BytesIO(), {}, KEK)
    assert repr(writer) == "ArchiveWriter(<key hidden>)"


# -- attacks ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_chunks() -> tuple[bytes, bytes]:
    """(payload, archive) of three chunks: two full ones and a short last one."""
    payload = payload_of(2 * CHUNK_BYTES + 100, seed=3)
    return payload, make_archive(payload)


def test_wrong_magic_is_not_a_coffer_backup() -> None:
    """Another file type, or one edited magic byte, is not a coffer backup."""
    data = make_archive(b"payload")
    assert refusal(b"SQLite format 3\x00" + data[16:]) == WRONG_MAGIC
    for offset in range(len(MAGIC)):
        assert refusal(flipped(data, offset)) == WRONG_MAGIC
    assert refusal(b"") == WRONG_MAGIC


def test_an_edited_header_value_fails_the_first_chunk() -> None:
    """A header value edited in place (the JSON stays valid) no longer matches the digest
    every chunk is bound to; an edited format or unparsable JSON is refused as unreadable."""
    data = make_archive(b"payload")
    parts = layout(data)
    start = parts.header_end - len(parts.header_bytes)
    note = start + parts.header_bytes.index(b'"unit"') + 1
    assert refusal(flipped(data, note)) == integrity(0)
    created = start + parts.header_bytes.index(b"1700000000.5") + 1
    assert refusal(flipped(data, created)) == integrity(0)  # 1600000000.5: valid JSON
    version = start + parts.header_bytes.index(b'"format":1') + len(b'"format":')
    assert refusal(flipped(data, version)) == UNREADABLE  # format 0
    assert refusal(flipped(data, start)) == UNREADABLE  # "{" becomes "z"
    assert refusal(parts.rebuild(header_bytes=b"[1,2]")) == UNREADABLE
    other_format = canonical({**parts.header, "format": 2})
    assert refusal(parts.rebuild(header_bytes=other_format)) == UNREADABLE


def test_every_single_bit_flip_in_the_header_is_refused() -> None:
    """Flipping the low bit of any byte of the length field or header JSON never yields the
    payload: the archive is refused as invalid or its key does not open."""
    data = make_archive(b"payload" * 20)
    parts = layout(data)
    key_start = parts.header_bytes.index(b'"archive_key":"') + len(b'"archive_key":"')
    key_end = parts.header_bytes.index(b'"', key_start)
    for offset in range(len(MAGIC), parts.header_end):
        edited = flipped(data, offset)
        with pytest.raises((InvalidInput, DecryptionFailed)) as raised:
            read_archive(edited)
        if isinstance(raised.value, InvalidInput):
            assert raised.value.field == "file"
            assert raised.value.message.startswith(PREFIX)
        position = offset - (len(MAGIC) + 4)
        if key_start <= position < key_end:
            if chr(edited[offset]) in "0123456789abcdef":
                assert isinstance(raised.value, DecryptionFailed), offset
            else:
                assert raised.value.message == PREFIX + "its archive key is malformed"


def test_a_flipped_byte_in_any_chunk_body_fails_that_chunk(
    three_chunks: tuple[bytes, bytes],
) -> None:
    """An edited byte at the start, middle or end (the tag) of each chunk's ciphertext
    fails that chunk's integrity check."""
    _, data = three_chunks
    for index, frame in enumerate(layout(data).frames):
        body_start = frame.offset + 5
        for offset in (body_start, body_start + len(frame.body) // 2, frame.end - 1):
            assert refusal(flipped(data, offset, 0x80)) == integrity(index)


def test_an_edited_flag_fails_or_is_malformed(three_chunks: tuple[bytes, bytes]) -> None:
    """A chunk flagged last too early (or not last at the end) fails its check, since the
    flag is bound to it; a flag other than 0 or 1 is a malformed frame."""
    _, data = three_chunks
    frames = layout(data).frames
    assert refusal(flipped(data, frames[0].offset)) == integrity(0)  # 0 -> 1: "last" early
    assert refusal(flipped(data, frames[1].offset)) == integrity(1)
    assert refusal(flipped(data, frames[2].offset)) == integrity(2)  # 1 -> 0: "more" follows
    assert refusal(flipped(data, frames[1].offset, 0x02)) == (
        "chunk 1 has a malformed frame (edited)"
    )


def test_an_edited_chunk_length_is_refused(three_chunks: tuple[bytes, bytes]) -> None:
    """A chunk length made shorter fails that chunk; longer than the file, it is truncated;
    beyond the frame limit, malformed."""
    _, data = three_chunks
    frames = layout(data).frames
    length_low = frames[1].offset + 4
    assert refusal(flipped(data, length_low)) == integrity(1)  # one byte shorter or longer
    last_length = frames[2].offset + 1
    grown = data[:last_length] + struct.pack(">I", 10_000) + data[last_length + 4 :]
    assert refusal(grown) == inside(2)
    huge = data[: frames[0].offset] + struct.pack(">BI", 0, MAX_CHUNK_BYTES + 1)
    assert refusal(huge + frames[0].body) == "chunk 0 has a malformed frame (edited)"


def test_reordered_dropped_or_spliced_chunks_are_refused(
    three_chunks: tuple[bytes, bytes],
) -> None:
    """Swapping chunks, dropping the middle or the last one, repeating one, or putting in a
    chunk (or the header) of another archive under the same KEK is refused."""
    payload, data = three_chunks
    parts = layout(data)
    first, middle, last = parts.frames
    assert refusal(parts.rebuild(frames=[middle, first, last])) == integrity(0)
    assert refusal(parts.rebuild(frames=[first, last, middle])) == integrity(1)
    assert refusal(parts.rebuild(frames=[first, last])) == integrity(1)
    assert refusal(parts.rebuild(frames=[first, middle])) == BEFORE_LAST
    assert refusal(parts.rebuild(frames=[first, first, middle, last])) == integrity(1)
    other = layout(make_archive(payload))
    assert refusal(parts.rebuild(frames=[first, other.frames[1], last])) == integrity(1)
    assert refusal(parts.rebuild(header_bytes=other.header_bytes)) == integrity(0)


def test_appended_bytes_or_chunks_are_refused(three_chunks: tuple[bytes, bytes]) -> None:
    """One byte, or a whole copy of the last chunk, after the chunk flagged last is refused."""
    _, data = three_chunks
    assert refusal(data + b"\x00") == APPENDED
    assert refusal(data + layout(data).frames[-1].raw) == APPENDED
    small = make_archive(b"")
    assert refusal(small + small) == APPENDED


def expected_truncation(parts: Layout, length: int) -> str:
    """The reason a file cut to ``length`` bytes is refused with."""
    if length < len(MAGIC):
        return WRONG_MAGIC
    if length < parts.header_end:
        return IN_HEADER
    for index, frame in enumerate(parts.frames):
        if length < frame.offset + 5:
            return BEFORE_LAST
        if length < frame.end:
            return inside(index)
    raise AssertionError("not truncated")


def test_truncated_at_every_offset_of_a_small_archive() -> None:
    """A single-chunk archive cut at every length from 0 to one byte short is refused with
    the reason that fits where it ends: magic, header, frame or chunk."""
    data = make_archive(b"a small payload " * 8)
    parts = layout(data)
    reasons = {expected_truncation(parts, length) for length in range(len(data))}
    assert reasons == {WRONG_MAGIC, IN_HEADER, BEFORE_LAST, inside(0)}
    for length in range(len(data)):
        assert refusal(data[:length]) == expected_truncation(parts, length), length


def test_truncated_around_every_chunk_boundary_of_a_large_archive(
    three_chunks: tuple[bytes, bytes],
) -> None:
    """A three-chunk archive cut just before, at and after each frame head, inside each body
    and one byte short is refused, naming the chunk it ends in."""
    _, data = three_chunks
    parts = layout(data)
    cuts = {parts.header_end - 1}
    for frame in parts.frames:
        cuts |= {frame.offset, frame.offset + 1, frame.offset + 5, frame.offset + 6}
        cuts |= {frame.offset + 5 + len(frame.body) // 2, frame.end - 1}
    for length in sorted(cuts):
        assert refusal(data[:length]) == expected_truncation(parts, length), length
    assert refusal(data[: parts.frames[1].offset]) == BEFORE_LAST  # the first chunk is whole


def test_an_archive_key_sealed_under_another_kek_does_not_open() -> None:
    """An archive key sealed under another KEK (or under the right KEK for another purpose)
    raises DecryptionFailed: the configured root key does not open the archive."""
    data = make_archive(b"payload")
    parts = layout(data)
    for sealed in (
        OTHER_KEK.seal_small_secret(bytes(32), BACKUP_KEY_AAD),
        KEK.seal_small_secret(bytes(32), mfa_secret_aad(user_id="u_1")),
    ):
        header = canonical({**parts.header, "archive_key": sealed.hex()})
        with pytest.raises(DecryptionFailed):
            read_archive(parts.rebuild(header_bytes=header))
    with pytest.raises(DecryptionFailed):
        read_archive(data, OTHER_KEK)
    not_hex = canonical({**parts.header, "archive_key": "zz"})
    assert refusal(parts.rebuild(header_bytes=not_hex)) == "its archive key is malformed"


def test_oversized_header_is_refused_before_it_is_read() -> None:
    """A header length above the limit is refused without reading (or allocating) it."""
    data = MAGIC + struct.pack(">I", MAX_HEADER_BYTES + 1) + b"{}"
    assert refusal(data) == "its header is too large"
