"""Queries on the audit log's tables: the tree state, sealing, checkpoints, reading in order,
pruning, cursors. Rows come back as plain tuples and dicts; the audit layer gives them meaning.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from coffer.storage.database import dialect_insert
from coffer.storage.json_text import json_text
from coffer.storage.tables import (
    audit_checkpoints,
    audit_cursors,
    audit_log,
    audit_tree,
    organizations,
)

# audit_log columns in the order of coffer.audit.records.RECORD_COLUMNS, metadata unparsed.
RECORD_SELECT: tuple[sa.ColumnElement[Any], ...] = (
    audit_log.c.leaf_index,
    audit_log.c.id,
    audit_log.c.timestamp,
    audit_log.c.action,
    audit_log.c.actor_id,
    audit_log.c.actor_kind,
    audit_log.c.org_id,
    audit_log.c.project,
    audit_log.c.environment,
    audit_log.c.key,
    audit_log.c.source_ip,
    audit_log.c.user_agent,
    audit_log.c.result,
    json_text(audit_log.c.metadata).label("metadata"),
)


@dataclass
class TreeState:
    """The sealed tree: its size and frontier (subtree roots, leftmost first)."""

    size: int
    frontier: list[bytes]
    pruned_before: int
    legacy_through: int


def lock_tree(conn: sa.Connection) -> TreeState:
    """Returns the tree state, locked for the rest of the transaction (one sealer at a time)."""
    row = conn.execute(
        sa.select(
            audit_tree.c.size,
            audit_tree.c.frontier,
            audit_tree.c.pruned_before,
            audit_tree.c.legacy_through,
        )
        .where(audit_tree.c.id == 1)
        .with_for_update()
    ).one()
    return TreeState(int(row[0]), [bytes.fromhex(h) for h in row[1]], int(row[2]), int(row[3]))


def read_tree(conn: sa.Connection) -> TreeState:
    """Returns the tree state without locking it."""
    row = conn.execute(
        sa.select(
            audit_tree.c.size,
            audit_tree.c.frontier,
            audit_tree.c.pruned_before,
            audit_tree.c.legacy_through,
        ).where(audit_tree.c.id == 1)
    ).one()
    return TreeState(int(row[0]), [bytes.fromhex(h) for h in row[1]], int(row[2]), int(row[3]))


def save_tree(conn: sa.Connection, state: TreeState) -> None:
    """Stores the tree state (in the transaction that locked it)."""
    conn.execute(
        sa.update(audit_tree)
        .where(audit_tree.c.id == 1)
        .values(
            size=state.size,
            frontier=[h.hex() for h in state.frontier],
            pruned_before=state.pruned_before,
        )
    )


def unsealed_rows(conn: sa.Connection, limit: int) -> list[tuple[Any, ...]]:
    """Returns up to ``limit`` entries without a leaf index, oldest first, as
    (record values..., seq, mac)."""
    return [
        tuple(row)
        for row in conn.execute(
            sa.select(*RECORD_SELECT, audit_log.c.seq, audit_log.c.mac)
            .where(audit_log.c.leaf_index.is_(None))
            .order_by(audit_log.c.seq)
            .limit(limit)
        )
    ]


def count_unsealed(conn: sa.Connection) -> int:
    """Returns how many entries wait for a leaf index."""
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(audit_log.c.leaf_index.is_(None))
        ).scalar_one()
    )


def assign_leaves(conn: sa.Connection, leaves: Sequence[tuple[int, int, bytes]]) -> None:
    """Gives entries their places: (seq, leaf index, leaf hash) each."""
    if not leaves:
        return
    conn.execute(
        sa.update(audit_log)
        .where(audit_log.c.seq == sa.bindparam("b_seq"))
        .values(leaf_index=sa.bindparam("b_index"), leaf_hash=sa.bindparam("b_hash")),
        [{"b_seq": seq, "b_index": index, "b_hash": leaf} for seq, index, leaf in leaves],
    )


def release_places_from(conn: sa.Connection, index: int) -> None:
    """Clears the leaf index and hash of rows that claim a place at ``index`` or beyond."""
    conn.execute(
        sa.update(audit_log)
        .where(audit_log.c.leaf_index >= index)
        .values(leaf_index=None, leaf_hash=None)
    )


def sealed_rows(
    conn: sa.Connection,
    start: int = 0,
    stop: int | None = None,
    *,
    action: str | None = None,
    environments: Sequence[str] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Yields sealed entries with ``start <= leaf index < stop`` in index order, as
    (record values..., leaf_hash, mac), streaming rather than loading them all; only those
    of ``action`` and in ``environments`` when given."""
    query = (
        sa.select(*RECORD_SELECT, audit_log.c.leaf_hash, audit_log.c.mac)
        .where(audit_log.c.leaf_index >= start)
        .order_by(audit_log.c.leaf_index)
    )
    if stop is not None:
        query = query.where(audit_log.c.leaf_index < stop)
    if action is not None:
        query = query.where(audit_log.c.action == action)
    if environments is not None:
        query = query.where(audit_log.c.environment.in_(environments))
    result = conn.execution_options(stream_results=True, yield_per=5000).execute(query)
    for partition in result.partitions():
        for row in partition:
            yield tuple(row)


def row_by_id(conn: sa.Connection, entry_id: str) -> tuple[Any, ...] | None:
    """Returns one entry (record values..., leaf_hash, mac) by id, or None."""
    row = conn.execute(
        sa.select(*RECORD_SELECT, audit_log.c.leaf_hash, audit_log.c.mac).where(
            audit_log.c.id == entry_id
        )
    ).first()
    return tuple(row) if row is not None else None


def leaf_hashes(conn: sa.Connection, start: int, stop: int) -> list[bytes]:
    """Returns the stored leaf hashes of indexes ``start`` to ``stop - 1`` in order."""
    return [
        bytes(h)
        for h in conn.execute(
            sa.select(audit_log.c.leaf_hash)
            .where(audit_log.c.leaf_index >= start, audit_log.c.leaf_index < stop)
            .order_by(audit_log.c.leaf_index)
        ).scalars()
    ]


def first_index_at_or_after(conn: sa.Connection, since: float) -> int | None:
    """Returns the smallest leaf index of an entry written at or after ``since``."""
    value = conn.execute(
        sa.select(sa.func.min(audit_log.c.leaf_index)).where(audit_log.c.timestamp >= since)
    ).scalar_one()
    return None if value is None else int(value)


def last_index_before(conn: sa.Connection, cutoff: float) -> int | None:
    """Returns the largest leaf index of an entry written before ``cutoff``."""
    value = conn.execute(
        sa.select(sa.func.max(audit_log.c.leaf_index)).where(audit_log.c.timestamp < cutoff)
    ).scalar_one()
    return None if value is None else int(value)


def delete_before(conn: sa.Connection, index: int) -> int:
    """Deletes sealed entries with a leaf index below ``index``; returns how many."""
    result = conn.execute(sa.delete(audit_log).where(audit_log.c.leaf_index < index))
    return int(result.rowcount or 0)


CHECKPOINT_COLUMNS = (
    audit_checkpoints.c.seq,
    audit_checkpoints.c.tree_size,
    audit_checkpoints.c.root_hash,
    audit_checkpoints.c.timestamp,
    audit_checkpoints.c.key_id,
    audit_checkpoints.c.signature,
    audit_checkpoints.c.frontier,
)


def checkpoint_rows(conn: sa.Connection) -> list[tuple[Any, ...]]:
    """Returns every checkpoint as (seq, tree_size, root_hash, timestamp, key_id, signature,
    frontier hex list), in the order they are stored (by seq)."""
    return [
        tuple(row)
        for row in conn.execute(sa.select(*CHECKPOINT_COLUMNS).order_by(audit_checkpoints.c.seq))
    ]


def latest_checkpoint_row(conn: sa.Connection) -> tuple[Any, ...] | None:
    """Returns the checkpoint with the highest seq, or None."""
    row = conn.execute(
        sa.select(*CHECKPOINT_COLUMNS).order_by(audit_checkpoints.c.seq.desc()).limit(1)
    ).first()
    return tuple(row) if row is not None else None


def checkpoint_row_at_most(conn: sa.Connection, size: int) -> tuple[Any, ...] | None:
    """Returns the newest checkpoint whose tree size is at most ``size``, or None."""
    row = conn.execute(
        sa.select(*CHECKPOINT_COLUMNS)
        .where(audit_checkpoints.c.tree_size <= size)
        .order_by(audit_checkpoints.c.seq.desc())
        .limit(1)
    ).first()
    return tuple(row) if row is not None else None


def insert_checkpoint(
    conn: sa.Connection,
    *,
    seq: int,
    tree_size: int,
    root_hash: bytes,
    timestamp: float,
    key_id: str,
    signature: bytes,
    frontier: Sequence[bytes],
) -> None:
    """Stores one signed checkpoint."""
    conn.execute(
        sa.insert(audit_checkpoints).values(
            seq=seq,
            tree_size=tree_size,
            root_hash=root_hash,
            timestamp=timestamp,
            key_id=key_id,
            signature=signature,
            frontier=[h.hex() for h in frontier],
        )
    )


def cursor_position(conn: sa.Connection, name: str) -> int | None:
    """Returns the next leaf index consumer ``name`` will take, or None if it never ran."""
    value = conn.execute(
        sa.select(audit_cursors.c.position).where(audit_cursors.c.name == name)
    ).scalar_one_or_none()
    return None if value is None else int(value)


def cursor_positions(conn: sa.Connection) -> dict[str, tuple[int, str | None]]:
    """Returns every consumer's (position, last error) by name."""
    return {
        str(name): (int(position), error)
        for name, position, error in conn.execute(
            sa.select(audit_cursors.c.name, audit_cursors.c.position, audit_cursors.c.last_error)
        )
    }


def set_cursor(
    conn: sa.Connection, name: str, position: int, now: float, error: str | None = None
) -> None:
    """Records where consumer ``name`` has got to (and its last error, if any)."""
    updated = conn.execute(
        sa.update(audit_cursors)
        .where(audit_cursors.c.name == name)
        .values(position=position, updated_at=now, last_error=error)
    )
    if not updated.rowcount:
        conn.execute(
            sa.insert(audit_cursors).values(
                name=name, position=position, updated_at=now, last_error=error
            )
        )


def start_cursor(conn: sa.Connection, name: str, position: int, now: float) -> None:
    """Starts consumer ``name`` at ``position`` unless it has a cursor already, including one
    that a concurrent transaction (another node starting) is inserting: the first one stays."""
    insert = dialect_insert(conn)
    conn.execute(
        insert(audit_cursors)
        .values(name=name, position=position, updated_at=now, last_error=None)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def organization_ids(conn: sa.Connection) -> list[str]:
    """Returns the id of every organization (vault-wide events are recorded for each)."""
    return [str(org_id) for org_id in conn.execute(sa.select(organizations.c.id)).scalars()]


def oldest_waiting_timestamp(conn: sa.Connection) -> float | None:
    """The timestamp of the oldest entry without a place in the tree among those written
    after the entry placed last (None when there is none). The sealer takes entries in
    written order, so rows it refused lie before the entry placed last once anything written
    after them is sealed, and do not count. Reads the waiting entries only (through indexes)."""
    newest_place = sa.select(sa.func.max(audit_log.c.leaf_index)).scalar_subquery()
    placed_last = sa.select(audit_log.c.seq).where(audit_log.c.leaf_index == newest_place)
    after = sa.func.coalesce(placed_last.scalar_subquery(), 0)
    oldest = conn.execute(
        sa.select(sa.func.min(audit_log.c.timestamp)).where(
            audit_log.c.leaf_index.is_(None), audit_log.c.seq > after
        )
    ).scalar_one()
    return None if oldest is None else float(oldest)
