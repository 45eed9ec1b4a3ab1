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
from coffer.audit.records import RECORD_WIDTH, canonical_from_values
from coffer.crypto.audit_keys import AuditKeys
from coffer.crypto.merkle import Frontier, leaf_hash
from coffer.storage import audit_store


class SealRefused(Exception):
    """The stored log is not in a state the sealer may extend: it was rolled back behind a
    checkpoint this process signed, or its tree state is damaged. ``kind`` is a verifier
    problem kind; the message says what was found. Nothing is sealed until it is repaired."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


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


BATCH_PAUSE_SECONDS = 0.001


class AuditSealer:
    """Seals the log of one vault database."""

    def __init__(
        self,
        engine: Engine,
        keys: AuditKeys,
        policy: CheckpointPolicy | None = None,
        *,
        batch: int = 1000,
    ) -> None:
        self._engine = engine
        self._keys = keys
        self._policy = policy or CheckpointPolicy()
        self._batch = batch
        # The newest checkpoint this process has signed: the log may never fall behind it.
        self.highest_signed: Checkpoint | None = None

    def seal(self, *, checkpoint_now: bool = False, now: float | None = None) -> SealReport:
        """Seals every entry waiting; with ``checkpoint_now`` also signs a checkpoint of the
        whole tree unless the latest one already covers it. Returns what was done. Raises
        SealRefused when the stored log fell behind a checkpoint this process signed or
        its tree state is damaged."""
        report = SealReport()
        while True:
            sealed = self._seal_batch(report, checkpoint_now=checkpoint_now, now=now)
            if sealed < self._batch:
                return report
            # Let requests waiting for the database (a read's audit entry) in between, or on
            # SQLite's single connection they would wait for the whole backlog.
            time.sleep(BATCH_PAUSE_SECONDS)

    def _seal_batch(self, report: SealReport, *, checkpoint_now: bool, now: float | None) -> int:
        with self._engine.begin() as conn:
            state = audit_store.lock_tree(conn)
            latest_row = audit_store.latest_checkpoint_row(conn)
            latest = checkpoint_from_row(latest_row) if latest_row else None
            self._refuse_rollback(state.size, latest)
            frontier = self._frontier(state, latest)
            # Rows that claim a place beyond the tree were not put there by a sealer (it
            # assigns places only under this lock): take the places back, so they go
            # through the MAC check like any other unsealed row.
            audit_store.release_places_from(conn, state.size)
            rows = audit_store.unsealed_rows(conn, self._batch)
            leaves: list[tuple[int, int, bytes]] = []
            new_checkpoints: list[Checkpoint] = []
            for row in rows:
                values, seq, mac = row[:RECORD_WIDTH], int(row[RECORD_WIDTH]), row[-1]
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
            self.highest_signed = new_checkpoints[-1]
        return len(rows)

    def _refuse_rollback(self, size: int, latest: Checkpoint | None) -> None:
        highest = self.highest_signed
        if highest is None:
            return
        if latest is None or latest.seq < highest.seq or size < highest.tree_size:
            shown = f"#{latest.seq} (size {latest.tree_size})" if latest else "none"
            raise SealRefused(
                "rolled_back",
                f"this server signed checkpoint #{highest.seq} (size {highest.tree_size}) but "
                f"the latest stored is {shown}: the log was truncated or an old checkpoint "
                "replayed; nothing more is sealed until it is restored",
            )

    @staticmethod
    def _frontier(state: audit_store.TreeState, latest: Checkpoint | None) -> Frontier:
        try:
            frontier = Frontier(state.size, state.frontier)
        except ValueError:
            frontier = None
        if frontier is None or (
            latest is not None
            and latest.tree_size == state.size
            and frontier.root() != latest.root_hash
        ):
            raise SealRefused(
                "tree_state_damaged",
                "the stored tree state (table audit_tree) does not match the signed "
                "checkpoints: it was edited; nothing more is sealed until it is restored",
            )
        return frontier

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
