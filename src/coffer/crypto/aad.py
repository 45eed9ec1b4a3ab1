"""Canonical associated data: what a ciphertext is bound to, encoded without ambiguity.

Every part, the domain label first, is written as a 4-byte big-endian length followed by its
bytes (text as UTF-8, integers as decimal strings). Length prefixes make the encoding
injective: ``("ab", "c")`` and ``("a", "bc")`` never encode alike, and no encoding under one
label can equal one under another.
"""

from __future__ import annotations

SECRET_VERSION_LABEL = b"coffer/secret-version/v1"
DATA_KEY_LABEL = b"coffer/data-key/v1"
MFA_SECRET_LABEL = b"coffer/mfa-secret/v1"
_MAX_PART = 0xFFFFFFFF


def _int_text(name: str, value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int")
    return str(value)


def _encode(label: bytes, *fields: str) -> bytes:
    parts = [label, *(field.encode("utf-8") for field in fields)]
    out = bytearray()
    for part in parts:
        if len(part) > _MAX_PART:
            raise ValueError("associated data field too long")
        out += len(part).to_bytes(4, "big")
        out += part
    return bytes(out)


def secret_version_aad(
    *, org_id: str, project_id: str, environment_id: str, key: str, version: int, key_version: int
) -> bytes:
    """Returns the associated data binding a secret version's ciphertext to its row.

    Raises ``TypeError`` when ``version`` or ``key_version`` is not an ``int`` and
    ``UnicodeEncodeError`` when a text field cannot be encoded as UTF-8 (lone surrogates).
    """
    return _encode(
        SECRET_VERSION_LABEL,
        org_id,
        project_id,
        environment_id,
        key,
        _int_text("version", version),
        _int_text("key_version", key_version),
    )


def data_key_aad(*, org_id: str, project_id: str, key_version: int) -> bytes:
    """Returns the associated data binding a wrapped data key to its project and version.

    Raises ``TypeError`` when ``key_version`` is not an ``int``.
    """
    return _encode(DATA_KEY_LABEL, org_id, project_id, _int_text("key_version", key_version))


def mfa_secret_aad(*, user_id: str) -> bytes:
    """Returns the associated data binding a sealed TOTP seed to its user."""
    return _encode(MFA_SECRET_LABEL, user_id)


WEBHOOK_SECRET_LABEL = b"coffer/webhook-secret/v1"


def webhook_secret_aad(*, org_id: str, webhook_id: str) -> bytes:
    """Returns the associated data binding a sealed webhook signing secret to its webhook."""
    return _encode(WEBHOOK_SECRET_LABEL, org_id, webhook_id)


EPHEMERAL_SECRET_LABEL = b"coffer/ephemeral-secret/v1"


def ephemeral_secret_aad(*, org_id: str, secret_id: str, key: str) -> bytes:
    """Returns the associated data binding a standalone ephemeral secret's ciphertext to its
    row, so a value copied to another row does not open."""
    return _encode(EPHEMERAL_SECRET_LABEL, org_id, secret_id, key)
