"""The backup archive: a plain header, then the payload in AES-256-GCM chunks.

    "COFFERBK" | u32 header length | header (JSON) | chunk*
    chunk = flag (1 byte: 0 more, 1 last) | u32 length | AES-GCM ciphertext+tag

A fresh 32-byte key encrypts the chunks; the header carries it sealed under the vault's
key-encryption key, so only the same root key opens the archive. Chunk ``i`` uses nonce
``i`` (96-bit big-endian; the key is never reused) and binds SHA-256 of the header, its index
and its flag as associated data: editing the header or any chunk, reordering, dropping or
appending chunks all fail, and a file that ends before a chunk flagged last is truncated.
Each chunk's plaintext is zlib-compressed.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from coffer.crypto.aead import KEY_BYTES, new_key
from coffer.crypto.keys import KeyEncryptionKey
from coffer.domain.errors import DecryptionFailed, InvalidInput

MAGIC = b"COFFERBK"
FORMAT_VERSION = 1
CHUNK_BYTES = 1 << 20
MAX_HEADER_BYTES = 1 << 20
MAX_CHUNK_BYTES = CHUNK_BYTES + (CHUNK_BYTES >> 4) + 1024
BACKUP_KEY_AAD = b"coffer/backup-key/v1"
_LENGTH = struct.Struct(">I")
_CHUNK_HEAD = struct.Struct(">BI")


def _invalid(reason: str) -> InvalidInput:
    return InvalidInput(f"the backup file is not valid: {reason}", field="file")


def _chunk_aad(header_digest: bytes, index: int, last: bool) -> bytes:
    return header_digest + index.to_bytes(8, "big") + (b"\x01" if last else b"\x00")


def _nonce(index: int) -> bytes:
    return index.to_bytes(12, "big")


class ArchiveWriter:
    """Writes an archive to ``out``: ``header`` (JSON-ready; the sealed archive key is added
    under ``archive_key``), then the bytes given to ``write``, then ``close``."""

    def __init__(self, out: BinaryIO, header: dict[str, Any], kek: KeyEncryptionKey) -> None:
        self._out = out
        self._key = new_key()
        sealed = kek.seal_small_secret(self._key, BACKUP_KEY_AAD)
        full = {**header, "format": FORMAT_VERSION, "archive_key": sealed.hex()}
        header_bytes = json.dumps(full, sort_keys=True, separators=(",", ":")).encode()
        out.write(MAGIC + _LENGTH.pack(len(header_bytes)) + header_bytes)
        self._digest = hashlib.sha256(header_bytes).digest()
        self._aead = AESGCM(self._key)
        self._buffer = bytearray()
        self._index = 0

    def __repr__(self) -> str:
        return "ArchiveWriter(<key hidden>)"

    def write(self, data: bytes) -> None:
        """Adds ``data`` to the payload."""
        self._buffer += data
        while len(self._buffer) >= CHUNK_BYTES:
            self._chunk(bytes(self._buffer[:CHUNK_BYTES]), last=False)
            del self._buffer[:CHUNK_BYTES]

    def close(self) -> None:
        """Writes the last chunk (possibly empty); the archive is then complete."""
        self._chunk(bytes(self._buffer), last=True)
        self._buffer.clear()

    def _chunk(self, plaintext: bytes, *, last: bool) -> None:
        body = self._aead.encrypt(
            _nonce(self._index),
            zlib.compress(plaintext, 1),
            _chunk_aad(self._digest, self._index, last),
        )
        self._out.write(_CHUNK_HEAD.pack(1 if last else 0, len(body)) + body)
        self._index += 1


def read_header(inp: BinaryIO) -> tuple[dict[str, Any], bytes]:
    """Reads the header: returns it parsed and as stored. Raises InvalidInput (field
    ``file``) when the file is not a coffer backup."""
    if inp.read(len(MAGIC)) != MAGIC:
        raise _invalid("it is not a coffer backup (wrong magic bytes)")
    length_bytes = inp.read(_LENGTH.size)
    if len(length_bytes) != _LENGTH.size:
        raise _invalid("it ends inside its header (truncated)")
    (length,) = _LENGTH.unpack(length_bytes)
    if length > MAX_HEADER_BYTES:
        raise _invalid("its header is too large")
    header_bytes = inp.read(length)
    if len(header_bytes) != length:
        raise _invalid("it ends inside its header (truncated)")
    try:
        header = json.loads(header_bytes)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION:
        raise _invalid("its header is unreadable or of an unknown format")
    return header, header_bytes


def read_payload(
    inp: BinaryIO, header: dict[str, Any], header_bytes: bytes, kek: KeyEncryptionKey
) -> Iterator[bytes]:
    """Yields the payload chunk by chunk, each checked before it is yielded. Raises
    DecryptionFailed when ``kek`` does not open the archive key (another root key), and
    InvalidInput (field ``file``) for an edited, reordered or truncated archive."""
    try:
        sealed = bytes.fromhex(str(header.get("archive_key", "")))
    except ValueError:
        raise _invalid("its archive key is malformed") from None
    key = kek.open_small_secret(sealed, BACKUP_KEY_AAD)
    if len(key) != KEY_BYTES:
        raise DecryptionFailed()
    aead = AESGCM(key)
    digest = hashlib.sha256(header_bytes).digest()
    index = 0
    while True:
        head = inp.read(_CHUNK_HEAD.size)
        if len(head) != _CHUNK_HEAD.size:
            raise _invalid("it ends before its last chunk (truncated)")
        flag, length = _CHUNK_HEAD.unpack(head)
        if flag not in (0, 1) or length > MAX_CHUNK_BYTES:
            raise _invalid(f"chunk {index} has a malformed frame (edited)")
        body = inp.read(length)
        if len(body) != length:
            raise _invalid(f"it ends inside chunk {index} (truncated)")
        try:
            compressed = aead.decrypt(_nonce(index), body, _chunk_aad(digest, index, flag == 1))
        except InvalidTag:
            raise _invalid(
                f"chunk {index} fails its integrity check (edited or reordered)"
            ) from None
        try:
            yield zlib.decompress(compressed)
        except zlib.error:
            raise _invalid(f"chunk {index} does not decompress") from None
        index += 1
        if flag == 1:
            break
    if inp.read(1):
        raise _invalid("it has data after its last chunk (appended)")
