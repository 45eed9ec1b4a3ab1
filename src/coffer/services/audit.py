"""Use cases of the audit log: query, verify, export, prune, inclusion proofs, the feed that
streams, webhooks and the anomaly detector consume.

The log covers the whole vault; queries are limited to the caller's organization. Viewing,
verifying and exporting need the admin role; pruning by hand needs the owner.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from coffer.audit.checkpoints import Checkpoint
from coffer.audit.export import export_start, jsonl_export
from coffer.audit.formats import cef_line, syslog_message
from coffer.audit.live_check import verify_database
from coffer.audit.records import RECORD_WIDTH, Record, canonical_from_values, record_from_values
from coffer.audit.sealer import AuditSealer, SealRefused, checkpoint_from_row
from coffer.audit.verifier import VerifyReport
from coffer.audit.writer import AuditWriter
from coffer.crypto.audit_keys import AuditKeys, AuditPublicKey
from coffer.crypto.merkle import inclusion_proof, leaf_hash
from coffer.domain.access import Action
from coffer.domain.audit_query import AuditFilter, encode_cursor
from coffer.domain.errors import Conflict, InvalidInput, NotFound
from coffer.domain.events import Event, Result
from coffer.domain.identity import normalize_email
from coffer.domain.models import CallContext
from coffer.services.access import AccessGate
from coffer.storage import audit_search, audit_store, user_store

EXPORT_FORMATS = ("jsonl", "cef", "syslog")
_DAY = 86400.0


@dataclass(frozen=True)
class AuditPage:
    """One page of a query: entries newest first, and the cursor of the next page."""

    entries: list[Record]
    next: str | None


@dataclass(frozen=True)
class PruneResult:
    """What a prune removed: entries with an index below ``before_index``."""

    removed: int
    before_index: int


class AuditService:
    """The audit log of one vault."""

    def __init__(
        self,
        engine: Engine,
        keys: AuditKeys,
        audit: AuditWriter,
        sealer: AuditSealer,
        gate: AccessGate,
        *,
        retention_days: int = 0,
        version: str = "0",
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._audit = audit
        self.sealer = sealer
        self._gate = gate
        self._retention_days = retention_days
        self._version = version

    @property
    def public_key(self) -> AuditPublicKey:
        """The key that verifies this vault's checkpoints (public: no access check)."""
        return self._keys.public

    def query(self, ctx: CallContext, query: AuditFilter) -> AuditPage:
        """Returns the caller's organization's entries that match ``query``, newest first.
        ``actor`` may be an identity id or a member's e-mail address."""
        self._gate.require(ctx, Action.AUDIT_VIEW)
        with self._engine.connect() as conn:
            actor_ids: tuple[str, ...] = ()
            if query.actor is not None and "@" in query.actor:
                user = user_store.find_user_by_email(conn, normalize_email(query.actor))
                actor_ids = (user.id,) if user is not None else ("-",)
            rows = audit_search.search(conn, ctx.actor.org_id, query, actor_ids=actor_ids)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        entries = [record_from_values(row[:RECORD_WIDTH]) for row in rows]
        return AuditPage(entries, encode_cursor(int(rows[-1][RECORD_WIDTH])) if more else None)

    def verify(self, ctx: CallContext, *, known: Checkpoint | None = None) -> VerifyReport:
        """Seals what is waiting, signs a checkpoint and verifies the whole stored log;
        records ``audit.verified`` with the outcome."""
        self._gate.require(ctx, Action.AUDIT_VIEW)
        report = verify_database(self._engine, self._keys, self.sealer, known=known)
        first = report.first_problem()
        with self._engine.begin() as conn:
            self._audit.append(
                conn,
                ctx,
                Event.AUDIT_VERIFIED,
                result=Result.SUCCESS if report.ok else Result.FAILURE,
                metadata={
                    "entries": report.entries,
                    "tree_size": report.tree_size,
                    "problem": first.kind if first else None,
                },
            )
        return report

    def export(
        self, ctx: CallContext, *, fmt: str = "jsonl", since: float | None = None
    ) -> Iterator[bytes]:
        """Records ``audit.exported``, seals and signs a checkpoint, and returns the lines of
        the export (JSONL with proofs, CEF or RFC 5424 syslog), each ending in a newline.
        Entries of other organizations are left out (redacted to their leaf hash in JSONL).
        Raises InvalidInput naming ``format`` or ``since``."""
        if fmt not in EXPORT_FORMATS:
            raise InvalidInput(
                f"format: must be one of {', '.join(EXPORT_FORMATS)}", field="format"
            )
        if since is not None and since < 0:
            raise InvalidInput("since: must be Unix seconds", field="since")
        self._gate.require(ctx, Action.AUDIT_VIEW)
        with self._engine.begin() as conn:
            self._audit.append(
                conn, ctx, Event.AUDIT_EXPORTED, metadata={"format": fmt, "since": since}
            )
        self._seal(checkpoint_now=True)
        return self._lines(fmt, since, ctx.actor.org_id)

    def _lines(self, fmt: str, since: float | None, org_id: str) -> Iterator[bytes]:
        with self._engine.connect() as conn:
            latest_row = audit_store.latest_checkpoint_row(conn)
            if latest_row is None:
                return
            final = checkpoint_from_row(latest_row)
            if fmt == "jsonl":
                yield from jsonl_export(
                    conn, final, since=since, exported_at=time.time(), org_id=org_id
                )
                return
            start = export_start(conn, final, since)
            hostname = socket.gethostname() or "coffer"
            for row in audit_store.sealed_rows(conn, start, final.tree_size):
                if row[6] is not None and row[6] != org_id:
                    continue
                record = record_from_values(row[:RECORD_WIDTH])
                if fmt == "cef":
                    yield cef_line(record, version=self._version).encode("utf-8") + b"\n"
                else:
                    yield syslog_message(record, hostname=hostname).encode("utf-8") + b"\n"

    def proof(self, ctx: CallContext, entry_id: str) -> dict[str, Any]:
        """Returns an RFC 9162 inclusion proof of one entry against the latest checkpoint:
        the entry, its leaf hash, the audit path and the signed checkpoint. Raises NotFound
        for an unknown entry or one of another organization."""
        self._gate.require(ctx, Action.AUDIT_VIEW)
        self._seal(checkpoint_now=True)
        with self._engine.connect() as conn:
            row = audit_store.row_by_id(conn, entry_id)
            if row is None or row[6] != ctx.actor.org_id or row[0] is None:
                raise NotFound(f"no sealed audit entry {entry_id!r}", field="id")
            latest_row = audit_store.latest_checkpoint_row(conn)
            assert latest_row is not None
            final = checkpoint_from_row(latest_row)
            index = int(row[0])
            leaves = audit_store.leaf_hashes(conn, 0, final.tree_size)
        if len(leaves) != final.tree_size:
            raise NotFound("entries before this one were pruned; no proof can be built")
        canonical = canonical_from_values(row[:RECORD_WIDTH], index)
        return {
            "entry": record_from_values(row[:RECORD_WIDTH]),
            "index": index,
            "leaf_hash": leaf_hash(canonical).hex(),
            "canonical": canonical.decode("ascii"),
            "proof": [h.hex() for h in inclusion_proof(index, leaves)],
            "checkpoint": {k: v for k, v in final.to_json().items() if k != "frontier"},
        }

    def prune(self, ctx: CallContext | None, *, days: int | None = None) -> PruneResult:
        """Removes entries older than ``days`` (default: the retention setting) up to the
        newest checkpoint that lies wholly before the cutoff, so what remains still verifies
        from that signed checkpoint. Records ``audit.pruned``. Without ``ctx`` this is the
        server's own retention job. Raises InvalidInput when no retention is set."""
        if ctx is not None:
            self._gate.require(ctx, Action.AUDIT_MANAGE)
        keep_days = self._retention_days if days is None else days
        if keep_days <= 0:
            raise InvalidInput(
                "days: set COFFER_AUDIT_RETENTION_DAYS or pass a number of days above 0",
                field="days",
            )
        self._seal()
        cutoff = time.time() - keep_days * _DAY
        with self._engine.begin() as conn:
            state = audit_store.lock_tree(conn)
            last_old = audit_store.last_index_before(conn, cutoff)
            anchor_row = (
                audit_store.checkpoint_row_at_most(conn, last_old + 1)
                if last_old is not None
                else None
            )
            before = int(anchor_row[1]) if anchor_row else 0
            removed = 0
            if before > state.pruned_before:
                removed = audit_store.delete_before(conn, before)
                state.pruned_before = before
                audit_store.save_tree(conn, state)
            metadata = {
                "removed": removed,
                "before_index": state.pruned_before,
                "retention_days": keep_days,
            }
            # The log is the vault's: the retention job tells every organization.
            for org_id in [None] if ctx else audit_store.organization_ids(conn):
                self._audit.append(conn, ctx, Event.AUDIT_PRUNED, metadata=metadata, org_id=org_id)
        return PruneResult(removed, state.pruned_before)

    def _seal(self, *, checkpoint_now: bool = False) -> None:
        try:
            self.sealer.seal(checkpoint_now=checkpoint_now)
        except SealRefused as exc:
            raise Conflict(f"audit log: {exc.message}; see `coffer audit verify`") from None

    def read_after(self, position: int, limit: int) -> list[Record]:
        """Returns up to ``limit`` sealed records with an index from ``position`` on, in
        order: the feed that streams, webhooks and anomaly detection consume."""
        with self._engine.connect() as conn:
            return [
                record_from_values(row[:RECORD_WIDTH])
                for row in audit_store.sealed_rows(conn, position, position + limit)
            ]

    def read_range(
        self, start: int, stop: int, *, action: str, environments: Sequence[str]
    ) -> list[Record]:
        """Returns the sealed records with ``start <= index < stop`` of ``action`` in one
        of ``environments``, in order (a consumer interested in those alone)."""
        with self._engine.connect() as conn:
            return [
                record_from_values(row[:RECORD_WIDTH])
                for row in audit_store.sealed_rows(
                    conn, start, stop, action=action, environments=environments
                )
            ]

    def follow_from_head(self, names: Iterable[str], *, now: float | None = None) -> None:
        """Starts each consumer in ``names`` that has never run at the current end of the
        log, so a server started on an existing log (an upgraded vault) does not replay its
        whole history through webhooks and anomaly detection. Safe when several nodes start
        at the same moment: each consumer starts once."""
        with self._engine.begin() as conn:
            size = audit_store.read_tree(conn).size
            for name in names:
                audit_store.start_cursor(conn, name, size, now or time.time())

    def head(self) -> int:
        """Returns the number of sealed entries (the next leaf index)."""
        with self._engine.connect() as conn:
            return audit_store.read_tree(conn).size
