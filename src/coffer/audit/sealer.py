"""The sealer: gives written entries their places in the Merkle tree and signs checkpoints.

Requests write entries with a MAC and no index, in their own transactions, so they never wait
for one another. The sealer then takes unsealed entries in the order they were inserted,
checks each MAC (a row coffer did not write is refused and left out of the tree), assigns
consecutive leaf indexes and leaf hashes, and signs a checkpoint every ``every_entries``
entries, and after ``every_seconds`` when anything new was sealed. The tree state row is
locked while it works, so several server processes can run sealers safely.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from coffer.audit.checkpoints import Checkpoint, sign_checkpoint
from coffer.audit.records import canonical_from_values
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.merkle import Frontier, leaf_hash
from coffer.storage import audit_store

_RECORD_WIDTH = 14


@dataclass(frozen=True)
class CheckpointPolicy:
    """How often checkpoints are signed: every ``every_entries`` sealed entries, and
    ``every_seconds`` after the last one when entries were sealed since."""

    every_entries: int = 1000
    every_seconds: float = 60.0


@dataclass
class SealReport:
    """What one ``seal()`` did."""

    sealed: int = 0
    tree_size: int = 0
    rejected: list[str] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)


def checkpoint_from_row(row: tuple[object, ...]) -> Checkpoint:
    """Returns the Checkpoint of an ``audit_store`` checkpoint row."""
    seq, size, root, timestamp, key_id, signature, frontier = row
    return Checkpoint(
        seq=int(seq),  # type: ignore[call-overload]
        tree_size=int(size),  # type: ignore[call-overload]
        root_hash=bytes(root),  # type: ignore[call-overload]
        timestamp=float(timestamp),  # type: ignore[arg-type]
        key_id=str(key_id),
        signature=bytes(signature),  # type: ignore[call-overload]
        frontier=tuple(bytes.fromhex(h) for h in frontier),  # type: ignore[attr-defined]
    )


class AuditSealer:
    """Seals the log of one vault database."""

    def __init__(
        self,
        engine: Engine,
        keys: AuditKeys,
        policy: CheckpointPolicy | None = None,
        *,
        batch: int = 5000,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._policy = policy or CheckpointPolicy()
        self._batch = batch
        self.last_signed: Checkpoint | None = None

    def seal(self, *, checkpoint_now: bool = False, now: float | None = None) -> SealReport:
        """Seals every entry waiting; with ``checkpoint_now`` also signs a checkpoint of the
        whole tree unless the latest one already covers it. Returns what was done."""
        report = SealReport()
        while True:
            sealed = self._seal_batch(report, checkpoint_now=checkpoint_now, now=now)
            if sealed < self._batch:
                return report

    def _seal_batch(self, report: SealReport, *, checkpoint_now: bool, now: float | None) -> int:
        with self._engine.begin() as conn:
            state = audit_store.lock_tree(conn)
            latest_row = audit_store.latest_checkpoint_row(conn)
            latest = checkpoint_from_row(latest_row) if latest_row else None
            frontier = Frontier(state.size, state.frontier)
            rows = audit_store.unsealed_rows(conn, self._batch)
            leaves: list[tuple[int, int, bytes]] = []
            new_checkpoints: list[Checkpoint] = []
            for row in rows:
                values, seq, mac = row[:_RECORD_WIDTH], int(row[_RECORD_WIDTH]), row[-1]
                if not self._written_by_coffer(values, seq, mac, state.legacy_through):
                    report.rejected.append(str(values[1]))
                    continue
                index = frontier.size
                leaf = leaf_hash(canonical_from_values(values, index))
                frontier.append(leaf)
                leaves.append((seq, index, leaf))
                covered = latest.tree_size if latest else 0
                if frontier.size - covered >= self._policy.every_entries:
                    latest = self._sign(frontier, latest, now)
                    new_checkpoints.append(latest)
            audit_store.assign_leaves(conn, leaves)
            if self._checkpoint_due(frontier, latest, checkpoint_now, now):
                latest = self._sign(frontier, latest, now)
                new_checkpoints.append(latest)
            for checkpoint in new_checkpoints:
                audit_store.insert_checkpoint(
                    conn,
                    seq=checkpoint.seq,
                    tree_size=checkpoint.tree_size,
                    root_hash=checkpoint.root_hash,
                    timestamp=checkpoint.timestamp,
                    key_id=checkpoint.key_id,
                    signature=checkpoint.signature,
                    frontier=checkpoint.frontier,
                )
            state.size = frontier.size
            state.frontier = list(frontier.subtrees)
            audit_store.save_tree(conn, state)
        report.sealed += len(leaves)
        report.tree_size = frontier.size
        report.checkpoints.extend(new_checkpoints)
        if new_checkpoints:
            self.last_signed = new_checkpoints[-1]
        return len(rows)

    def _written_by_coffer(
        self, values: tuple[object, ...], seq: int, mac: object, legacy_through: int
    ) -> bool:
        if mac is None:
            return seq <= legacy_through
        return self._keys.mac_matches(canonical_from_values(values, None), bytes(mac))  # type: ignore[call-overload]

    def _checkpoint_due(
        self, frontier: Frontier, latest: Checkpoint | None, checkpoint_now: bool, now: float | None
    ) -> bool:
        if latest is None:
            return checkpoint_now or frontier.size > 0
        if frontier.size == latest.tree_size:
            return False
        if checkpoint_now:
            return True
        return (now or time.time()) - latest.timestamp >= self._policy.every_seconds

    def _sign(self, frontier: Frontier, latest: Checkpoint | None, now: float | None) -> Checkpoint:
        return sign_checkpoint(
            self._keys,
            seq=(latest.seq + 1) if latest else 1,
            tree_size=frontier.size,
            root_hash=frontier.root(),
            timestamp=now or time.time(),
            frontier=frontier.subtrees,
        )
