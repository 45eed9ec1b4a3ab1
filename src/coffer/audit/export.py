"""The JSONL export an auditor verifies offline, and its reader.

Layout, one JSON object per line:

1. a header: ``{"type": "header", "format": "coffer-audit-export/v1", "exported_at": ...,
   "start_index": a, "prefix": [hex...], "checkpoint": {...}, "since": ...}``, where
   ``checkpoint`` is the signed checkpoint the export ends at and ``prefix`` the
   perfect-subtree roots of the entries before ``a`` (left out by ``--since`` or pruned);
2. every entry from index ``a`` to the checkpoint's size, as ``export_line`` (its leaf hash,
   then its canonical record), with each signed checkpoint of that range on its own line
   right after the entry that completes it. An entry of another organization is redacted
   to ``{"_leaf":"<hex>","index":i,"redacted":true}``: the tree still verifies, and nothing
   of the other tenant's activity but its leaf hash leaves the server.

The verifier hashes entry lines as they are, so it never trusts the file's own claims: the
prefix must produce the root of a checkpoint at size ``a``, and every later root must match.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa

from coffer.audit.checkpoints import Checkpoint
from coffer.audit.records import RECORD_WIDTH, canonical_from_values, export_line, split_export_line
from coffer.audit.sealer import checkpoint_from_row
from coffer.audit.verifier import LogVerifier, Problem, VerifyReport
from coffer.crypto.audit_keys import AuditPublicKey
from coffer.crypto.merkle import Frontier
from coffer.domain.errors import InvalidInput
from coffer.storage import audit_store

EXPORT_FORMAT = "coffer-audit-export/v1"
_INDEX_KEY = b',"index":'
_ID_KEY = b',"id":"'
_REDACTED = b',"redacted":true}'


def jsonl_export(
    conn: sa.Connection,
    final: Checkpoint,
    *,
    since: float | None,
    exported_at: float,
    org_id: str | None,
) -> Iterator[bytes]:
    """Yields the lines (each ending in a newline) of an export that ends at ``final``,
    starting at the first entry written at or after ``since`` (or the oldest kept). Entries
    of organizations other than ``org_id`` (and the system's own) are redacted."""
    start = export_start(conn, final, since)
    anchor_row = audit_store.checkpoint_row_at_most(conn, start)
    anchor = checkpoint_from_row(anchor_row) if anchor_row else None
    prefix = Frontier(anchor.tree_size, anchor.frontier) if anchor else Frontier()
    prefix.extend(audit_store.leaf_hashes(conn, prefix.size, start))
    header = {
        "type": "header",
        "format": EXPORT_FORMAT,
        "exported_at": exported_at,
        "start_index": start,
        "prefix": [h.hex() for h in prefix.subtrees],
        "checkpoint": _checkpoint_json(final),
        "since": since,
    }
    yield _line(header)
    checkpoints = [
        checkpoint_from_row(row)
        for row in audit_store.checkpoint_rows(conn)
        if start <= row[1] and row[0] <= final.seq
    ]
    by_size: dict[int, list[Checkpoint]] = {}
    for checkpoint in checkpoints:
        by_size.setdefault(checkpoint.tree_size, []).append(checkpoint)
    for checkpoint in by_size.pop(start, []):
        yield _line(_checkpoint_json(checkpoint))
    for row in audit_store.sealed_rows(conn, start, final.tree_size):
        values = row[:RECORD_WIDTH]
        index = int(values[0])
        leaf = bytes(row[RECORD_WIDTH])
        if values[6] is None or values[6] == org_id:
            yield export_line(canonical_from_values(values, index), leaf) + b"\n"
        else:
            yield export_line(b'{"index":%d,"redacted":true}' % index, leaf) + b"\n"
        for checkpoint in by_size.pop(index + 1, []):
            yield _line(_checkpoint_json(checkpoint))


def export_start(conn: sa.Connection, final: Checkpoint, since: float | None) -> int:
    """Returns the first leaf index an export ending at ``final`` holds: the first entry
    written at or after ``since`` (``final.tree_size`` when there is none), never one
    pruned already."""
    start = audit_store.read_tree(conn).pruned_before
    if since is None:
        return start
    first = audit_store.first_index_at_or_after(conn, since)
    return max(start, final.tree_size if first is None else min(first, final.tree_size))


def _checkpoint_json(checkpoint: Checkpoint) -> dict[str, Any]:
    data = checkpoint.to_json()
    del data["frontier"]
    return data


def _line(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("ascii") + b"\n"


def verify_export(
    lines: Iterable[bytes], public_key: AuditPublicKey, *, known: Checkpoint | None = None
) -> VerifyReport:
    """Verifies an export read line by line. Raises InvalidInput when the first line is not
    a coffer export header; everything else that is wrong is reported as a problem."""
    stream = iter(lines)
    header = _read_header(next(stream, b""))
    final = Checkpoint.from_json(header["checkpoint"])
    start = header["start_index"]
    try:
        prefix = Frontier(start, [bytes.fromhex(h) for h in header["prefix"]])
    except (TypeError, ValueError):
        raise InvalidInput("export: the header's prefix is malformed") from None
    verifier = LogVerifier(public_key, start_index=start, start_frontier=prefix)
    if known is not None:
        verifier.watch(known)
    if not final.signature_valid(public_key):
        verifier.problem(
            Problem(
                "checkpoint_signature",
                "the export header's checkpoint is not signed by this public key",
            )
        )
    last_seen: Checkpoint | None = None
    for number, raw in enumerate(stream, start=2):
        line = raw.rstrip(b"\r\n")
        if not line:
            continue
        parts = split_export_line(line)
        if parts is not None:
            claimed, canonical = parts
            if canonical.endswith(_REDACTED):
                verifier.add_entry(_redacted_index(canonical), f"(line {number})", None, claimed)
            else:
                index, entry_id = _index_and_id(canonical)
                verifier.add_entry(index, entry_id or f"on line {number}", canonical, claimed)
            continue
        checkpoint = _checkpoint_line(line, number, verifier)
        if checkpoint is not None:
            verifier.add_checkpoint(checkpoint)
            if last_seen is None or checkpoint.seq > last_seen.seq:
                last_seen = checkpoint
    if (last_seen is None or last_seen.seq < final.seq) and verifier.size >= final.tree_size:
        verifier.add_checkpoint(final)  # its line was removed: check its root all the same
    if last_seen is not None and last_seen.seq > final.seq:
        verifier.problem(
            Problem(
                "checkpoint_replayed",
                f"the export's header names checkpoint #{final.seq} but the file goes on to "
                f"#{last_seen.seq}: its header was replaced by an older one",
            )
        )
    return verifier.finish(known=known, final=final)


def _read_header(line: bytes) -> dict[str, Any]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise InvalidInput(
            f"export: the first line is not a {EXPORT_FORMAT} header (was the file made by "
            "`coffer audit export --format jsonl`?)"
        )
    start = header.get("start_index")
    if not isinstance(start, int) or isinstance(start, bool) or start < 0:
        raise InvalidInput("export: the header's start_index must be a non-negative integer")
    if not isinstance(header.get("prefix"), list):
        raise InvalidInput("export: the header's prefix must be a list of hashes")
    return header


def _checkpoint_line(line: bytes, number: int, verifier: LogVerifier) -> Checkpoint | None:
    try:
        data = json.loads(line)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("type") == "checkpoint":
        try:
            return Checkpoint.from_json(data)
        except InvalidInput as exc:
            verifier.problem(Problem("malformed", f"line {number}: {exc}"))
            return None
    verifier.problem(
        Problem("malformed", f"line {number} is neither an entry nor a checkpoint: edited")
    )
    return None


def _redacted_index(canonical: bytes) -> int | None:
    try:
        index = json.loads(canonical).get("index")
    except (ValueError, AttributeError):
        return None
    return index if isinstance(index, int) else None


def _index_and_id(canonical: bytes) -> tuple[int | None, str | None]:
    """Reads the top-level index and id of canonical record bytes without parsing them all
    (sorted keys put both before ``metadata``, the only nested object that could repeat a
    key, and string values cannot contain an unescaped quote)."""
    at = canonical.find(_INDEX_KEY)
    index: int | None = None
    if at >= 0:
        end = at + len(_INDEX_KEY)
        stop = end
        while stop < len(canonical) and canonical[stop : stop + 1].isdigit():
            stop += 1
        index = int(canonical[end:stop]) if stop > end else None
    at = canonical.find(_ID_KEY)
    entry_id = None
    if at >= 0:
        end = at + len(_ID_KEY)
        entry_id = canonical[end : canonical.find(b'"', end)].decode("ascii", "replace")
    return index, entry_id
