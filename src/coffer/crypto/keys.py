"""The key hierarchy: root key -> key-encryption key -> project data keys.

Key material lives only in these objects; their ``repr``/``str`` print a mask, they refuse to
be pickled, and equality (where defined) is constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from pathlib import Path

from coffer.crypto.aead import KEY_BYTES, hkdf_sha256, new_key, open_envelope, seal
from coffer.domain.errors import ConfigError, DecryptionFailed, WrongRootKey

ENV_SOURCE = "COFFER_ROOT_KEY"
KEK_INFO = b"coffer/kek/v1"
KEY_CHECK_INFO = b"coffer/key-check/v1"
KEY_CHECK_BYTES = 16
KEK_CHECK_INFO = b"coffer/kek-check/v1"
# A KEK-sealed blob names the root-key generation that sealed it: marker, generation (4 bytes,
# big-endian), then the AES-GCM envelope. Blobs written before generations existed start with
# the envelope's own version byte and belong to generation 1.
GENERATION_MARKER = 0xC7
GENERATION_HEADER_BYTES = 5
_MAX_KEY_FILE_BYTES = 4096
_MASK = "********"


def _check_material(material: bytes) -> bytes:
    if len(material) != KEY_BYTES:
        raise ValueError(f"key material must be {KEY_BYTES} bytes")
    return bytes(material)


class RootKey:
    """The 32-byte root of the hierarchy, from ``COFFER_ROOT_KEY`` or the root key file."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        """Raises ``ValueError`` when ``material`` is not exactly 32 bytes."""
        self._material = _check_material(material)

    @classmethod
    def generate(cls) -> RootKey:
        """Returns a new random root key."""
        return cls(new_key())

    @classmethod
    def from_base64(cls, text: str, *, source: str) -> RootKey:
        """Returns the key encoded in ``text`` (surrounding whitespace ignored).

        Raises ``ConfigError`` naming ``source`` when ``text`` is not standard base64 of
        exactly 32 bytes; the message never contains ``text``.
        """
        try:
            material = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            material = b""
        if len(material) != KEY_BYTES:
            raise ConfigError(
                f"root key from {source} is invalid: it must be base64 of exactly {KEY_BYTES} bytes"
            )
        return cls(material)

    def to_base64(self) -> str:
        """Returns the standard base64 text of the key (44 characters)."""
        return base64.b64encode(self._material).decode("ascii")

    def __repr__(self) -> str:
        return f"RootKey({_MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RootKey):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        raise TypeError("RootKey is not hashable")

    def __reduce__(self) -> str:
        raise TypeError("RootKey cannot be pickled")


def load_root_key(*, env_value: str | None, key_file: Path) -> RootKey:
    """Returns the root key from ``env_value`` when it is non-empty, else from ``key_file``.

    Raises ``ConfigError`` naming ``COFFER_ROOT_KEY`` or the file's path when the file is
    missing, cannot be read (the OS reason is given) or does not hold base64 of 32 bytes.
    """
    if env_value:
        return RootKey.from_base64(env_value, source=ENV_SOURCE)
    try:
        with key_file.open("rb") as handle:
            raw = handle.read(_MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"root key file {key_file} does not exist; run `coffer init` or set {ENV_SOURCE}"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"root key file {key_file} cannot be read: {reason}") from None
    try:
        text = "" if len(raw) > _MAX_KEY_FILE_BYTES else raw.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return RootKey.from_base64(text, source=str(key_file))


def write_root_key_file(path: Path, key: RootKey) -> None:
    """Creates ``path`` holding ``key`` as base64, with mode 0600, never replacing a file.

    A missing parent directory is created with mode 0700. Raises ``ConfigError`` naming the
    path when it already exists or cannot be written (the OS reason is given); a partly
    written file is removed.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=False)
        path.parent.chmod(0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(
            f"cannot create directory {path.parent} for the root key file: {exc.strerror}"
        ) from None
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"root key file {path} already exists; refusing to overwrite it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create root key file {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write((key.to_base64() + "\n").encode("ascii"))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write root key file {path}: {exc.strerror}") from None


def key_check_value(root: RootKey) -> str:
    """Returns the hex key check value of ``root`` (HKDF info ``coffer/key-check/v1``).

    It identifies the root key without revealing it or the key-encryption key derived from it.
    """
    return hkdf_sha256(root._material, info=KEY_CHECK_INFO, length=KEY_CHECK_BYTES).hex()


def verify_key_check_value(root: RootKey, stored: str) -> None:
    """Returns when ``root``'s check value equals ``stored`` (constant-time compare).

    Raises ``WrongRootKey`` when it does not.
    """
    expected = key_check_value(root).encode("ascii")
    if not hmac.compare_digest(expected, stored.encode("utf-8")):
        raise WrongRootKey(
            "the root key does not match this vault (key check value mismatch); "
            f"check {ENV_SOURCE} or the root key file"
        )


class DataKey:
    """A project's 32-byte data key; seals and opens secret values."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        """Raises ``ValueError`` when ``material`` is not exactly 32 bytes."""
        self._material = _check_material(material)

    @classmethod
    def generate(cls) -> DataKey:
        """Returns a new random data key."""
        return cls(new_key())

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Returns the AES-256-GCM envelope of ``plaintext`` bound to ``aad``."""
        return seal(self._material, plaintext, aad)

    def open(self, envelope: bytes, aad: bytes) -> bytes:
        """Returns the plaintext of ``envelope``; raises ``DecryptionFailed`` on any failure."""
        return open_envelope(self._material, envelope, aad)

    def reseal(self, envelope: bytes, aad: bytes, target: DataKey, target_aad: bytes) -> bytes:
        """Returns what ``envelope`` (under this key and ``aad``) holds, sealed under
        ``target`` and ``target_aad`` with a fresh nonce; the plaintext never leaves this
        method. Raises ``DecryptionFailed`` when ``envelope`` does not open."""
        return seal(target._material, open_envelope(self._material, envelope, aad), target_aad)

    def __repr__(self) -> str:
        return f"DataKey({_MASK})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DataKey):
            return NotImplemented
        return hmac.compare_digest(self._material, other._material)

    def __hash__(self) -> int:
        raise TypeError("DataKey is not hashable")

    def __reduce__(self) -> str:
        raise TypeError("DataKey cannot be pickled")


class KeyEncryptionKey:
    """The key that wraps data keys; derived from the root key, kept in memory only."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        """Raises ``ValueError`` when ``material`` is not exactly 32 bytes."""
        self._material = _check_material(material)

    @classmethod
    def derive(cls, root: RootKey) -> KeyEncryptionKey:
        """Returns HKDF-SHA256(root, info ``coffer/kek/v1``) as a key-encryption key."""
        return cls(hkdf_sha256(root._material, info=KEK_INFO, length=KEY_BYTES))

    @classmethod
    def generate(cls) -> KeyEncryptionKey:
        """Returns a new random key-encryption key (for roots held by an HSM or a KMS, which
        wrap it)."""
        return cls(new_key())

    def check_value(self) -> str:
        """Returns the hex check value of this key (HKDF info ``coffer/kek-check/v1``): it
        tells a right key from a wrong one without revealing either."""
        return hkdf_sha256(self._material, info=KEK_CHECK_INFO, length=KEY_CHECK_BYTES).hex()

    def rewrap(self, envelope: bytes, aad: bytes, target: KeyEncryptionKey) -> bytes:
        """Returns what ``envelope`` (sealed under this key and ``aad``) holds, sealed under
        ``target`` with the same ``aad``; the plaintext never leaves this method. Raises
        ``DecryptionFailed`` when ``envelope`` does not open."""
        return seal(target._material, open_envelope(self._material, envelope, aad), aad)

    def wrap(self, data_key: DataKey, aad: bytes) -> bytes:
        """Returns the AES-256-GCM envelope of ``data_key``'s 32 bytes bound to ``aad``."""
        return seal(self._material, data_key._material, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> DataKey:
        """Returns the data key in ``wrapped``.

        Raises ``DecryptionFailed`` when it does not open under this key and ``aad`` or does
        not hold exactly 32 bytes.
        """
        material = open_envelope(self._material, wrapped, aad)
        if len(material) != KEY_BYTES:
            raise DecryptionFailed()
        return DataKey(material)

    def seal_small_secret(self, plaintext: bytes, aad: bytes) -> bytes:
        """Returns the AES-256-GCM envelope of a small account secret (a TOTP seed) bound to
        ``aad``, which must come from ``crypto.aad`` under its own label."""
        return seal(self._material, plaintext, aad)

    def open_small_secret(self, envelope: bytes, aad: bytes) -> bytes:
        """Opens what ``seal_small_secret`` sealed; raises ``DecryptionFailed`` otherwise."""
        return open_envelope(self._material, envelope, aad)

    def __repr__(self) -> str:
        return f"KeyEncryptionKey({_MASK})"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("KeyEncryptionKey cannot be pickled")


def tag_generation(generation: int, envelope: bytes) -> bytes:
    """Returns ``envelope`` prefixed with the root-key ``generation`` that sealed it."""
    if not 1 <= generation < 1 << 32:
        raise ValueError("generation must be between 1 and 2**32 - 1")
    return bytes([GENERATION_MARKER]) + generation.to_bytes(4, "big") + envelope


def generation_prefix(generation: int) -> bytes:
    """Returns the first bytes of every blob ``tag_generation`` makes for ``generation``."""
    return tag_generation(generation, b"")


def split_generation(blob: bytes) -> tuple[int, bytes]:
    """Returns (generation, envelope) of a KEK-sealed blob; an untagged blob is generation 1.
    Raises ``DecryptionFailed`` when the blob is too short to hold a tag."""
    if blob[:1] != bytes([GENERATION_MARKER]):
        return 1, blob
    if len(blob) < GENERATION_HEADER_BYTES:
        raise DecryptionFailed()
    return int.from_bytes(blob[1:GENERATION_HEADER_BYTES], "big"), blob[GENERATION_HEADER_BYTES:]
