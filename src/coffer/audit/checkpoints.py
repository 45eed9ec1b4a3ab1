"""Signed checkpoints (tree heads) of the audit log.

A checkpoint states that the first ``tree_size`` entries of the log hash to ``root_hash``. It
is signed with Ed25519 over a fixed text form (``signed_message``) that names its sequence
number, so an old checkpoint cannot stand in for a newer one without the gap showing.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from coffer.crypto.audit_keys import AuditKeys, AuditPublicKey
from coffer.domain.errors import InvalidInput

MESSAGE_HEADER = "coffer audit checkpoint v1"


@dataclass(frozen=True)
class Checkpoint:
    """One signed tree head. ``frontier`` (the perfect-subtree roots at ``tree_size``) lets a
    verifier start at this checkpoint once the entries before it are pruned."""

    seq: int
    tree_size: int
    root_hash: bytes
    timestamp: float
    key_id: str
    signature: bytes
    frontier: tuple[bytes, ...] = ()

    def signed_message(self) -> bytes:
        """The bytes the signature covers."""
        return signed_message(self.seq, self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def signature_valid(self, public_key: AuditPublicKey) -> bool:
        """True when ``public_key`` signed this checkpoint as it stands."""
        return self.key_id == public_key.key_id and public_key.verify(
            self.signature, self.signed_message()
        )

    def to_json(self) -> dict[str, Any]:
        """The checkpoint as a JSON object (hashes in hex, signature in base64)."""
        return {
            "type": "checkpoint",
            "seq": self.seq,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "frontier": [h.hex() for h in self.frontier],
        }

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        """Reads ``to_json`` output. Raises InvalidInput naming the field that is missing or
        malformed."""
        if not isinstance(data, dict):
            raise InvalidInput("checkpoint: expected a JSON object")
        try:
            return cls(
                seq=_int(data, "seq"),
                tree_size=_int(data, "tree_size"),
                root_hash=bytes.fromhex(_str(data, "root_hash")),
                timestamp=float(data["timestamp"]),
                key_id=_str(data, "key_id"),
                signature=base64.b64decode(_str(data, "signature"), validate=True),
                frontier=tuple(bytes.fromhex(h) for h in data.get("frontier", [])),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise InvalidInput(f"checkpoint: a field is missing or malformed ({exc})") from None


def _int(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer")
    return value


def _str(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def signed_message(
    seq: int, tree_size: int, root_hash: bytes, timestamp: float, key_id: str
) -> bytes:
    """The text a checkpoint signature covers, one field per line."""
    return (
        f"{MESSAGE_HEADER}\n{key_id}\n{seq}\n{tree_size}\n"
        f"{base64.b64encode(root_hash).decode('ascii')}\n{timestamp:.6f}\n"
    ).encode("ascii")


def sign_checkpoint(
    keys: AuditKeys,
    *,
    seq: int,
    tree_size: int,
    root_hash: bytes,
    timestamp: float,
    frontier: tuple[bytes, ...],
) -> Checkpoint:
    """Returns a new checkpoint signed with ``keys``."""
    timestamp = round(timestamp, 6)
    key_id = keys.public.key_id
    signature = keys.sign(signed_message(seq, tree_size, root_hash, timestamp, key_id))
    return Checkpoint(seq, tree_size, root_hash, timestamp, key_id, signature, frontier)
