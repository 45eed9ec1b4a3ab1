"""The public form of an audit entry (a "record") and its canonical bytes.

A record is what leaves the server: API answers, exports, webhooks and SIEM streams all carry
the same keys. Its canonical bytes (compact JSON, sorted keys, ASCII) are what the entry's MAC
covers (with ``index`` null, as written) and what its Merkle leaf hashes (with its index).
Metadata is stored as canonical JSON text and embedded as stored.

An export line is the canonical bytes with the leaf hash in front (``_leaf`` sorts before
every record key), so a verifier can hash each line without parsing it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from coffer.storage.json_text import canonical_json

Record = dict[str, Any]

# The audit_log columns a record is built from, in this order.
RECORD_COLUMNS = (
    "leaf_index",
    "id",
    "timestamp",
    "action",
    "actor_id",
    "actor_kind",
    "org_id",
    "project",
    "environment",
    "key",
    "source_ip",
    "user_agent",
    "result",
    "metadata",
)

# A row handed to the functions below starts with these values (more columns may follow).
RECORD_WIDTH = len(RECORD_COLUMNS)

LEAF_PREFIX = b'{"_leaf":"'
# '{"_leaf":"' + 64 hex digits + '",'
LEAF_FIELD_BYTES = len(LEAF_PREFIX) + 64 + 2

_string = encode_basestring_ascii
# The keys in sorted order; %r of a float is its shortest round-trip form, as JSON writes it.
_CANONICAL = (
    '{"action":%s,"actor":{"id":%s,"kind":%s},"environment":%s,"id":%s,"index":%s,"key":%s,'
    '"metadata":%s,"org":%s,"project":%s,"result":%s,"source_ip":%s,"time":%r,"user_agent":%s}'
)


def _text(value: str | None) -> str:
    return "null" if value is None else str(_string(value))


def record_from_values(values: Sequence[Any]) -> Record:
    """Returns the record of one row given as ``RECORD_COLUMNS`` values (``metadata`` may be
    a JSON text or an already parsed object)."""
    (index, entry_id, timestamp, action, actor_id, actor_kind, org_id, project, environment,
     key, source_ip, user_agent, result, metadata) = values  # fmt: skip
    if isinstance(metadata, str):
        metadata = json.loads(metadata)
    return {
        "index": index,
        "id": entry_id,
        "time": timestamp,
        "action": action,
        "actor": {"id": actor_id, "kind": actor_kind},
        "org": org_id,
        "project": project,
        "environment": environment,
        "key": key,
        "source_ip": source_ip,
        "user_agent": user_agent,
        "result": result,
        "metadata": metadata,
    }


def canonical_from_values(values: Sequence[Any], index: int | None) -> bytes:
    """Returns the canonical bytes of the record of ``values`` (``RECORD_COLUMNS`` order; the
    stored index in first place is ignored in favour of ``index``), with ``metadata`` given as
    the canonical JSON text it was stored as (or an object). Equal to
    ``canonical_bytes(record_from_values(...))`` and several times faster: this runs once per
    entry whenever a log is sealed or verified."""
    (_, entry_id, timestamp, action, actor_id, actor_kind, org_id, project, environment,
     key, source_ip, user_agent, result, metadata) = values  # fmt: skip
    if not isinstance(metadata, str):
        metadata = canonical_json(metadata)
    text = _CANONICAL % (
        _string(action),
        _text(actor_id),
        _text(actor_kind),
        _text(environment),
        _string(entry_id),
        "null" if index is None else int(index),
        _text(key),
        metadata,
        _text(org_id),
        _text(project),
        _string(result),
        _text(source_ip),
        float(timestamp),
        _text(user_agent),
    )
    return text.encode("ascii")


def canonical_bytes(record: Record) -> bytes:
    """Returns the canonical encoding of ``record``: compact JSON, sorted keys, ASCII only."""
    return canonical_json(record).encode("ascii")


def export_line(canonical: bytes, leaf: bytes) -> bytes:
    """Returns the export line of a sealed entry: ``{"_leaf":"<hex>",`` followed by its
    canonical bytes without their opening brace (no newline)."""
    return LEAF_PREFIX + leaf.hex().encode("ascii") + b'",' + canonical[1:]


def split_export_line(line: bytes) -> tuple[bytes, bytes] | None:
    """Returns (claimed leaf hash, canonical record bytes) of an export line, or None when
    the line does not have that shape (a checkpoint or header line, or a damaged one)."""
    if not line.startswith(LEAF_PREFIX) or line[LEAF_FIELD_BYTES - 2 : LEAF_FIELD_BYTES] != b'",':
        return None
    try:
        claimed = bytes.fromhex(line[len(LEAF_PREFIX) : LEAF_FIELD_BYTES - 2].decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None
    return claimed, b"{" + line[LEAF_FIELD_BYTES:]
