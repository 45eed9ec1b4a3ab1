"""Counting the reads of limited secrets exactly once, for any table with the columns of
``tables.read_limit_columns`` (vault secrets and ephemeral secrets alike).

The count is one conditional ``UPDATE ... RETURNING``: the row is counted only while it is
unsealed, unexpired and below its limit. PostgreSQL re-checks that condition on the row
version it locked, after any concurrent reader committed; SQLite runs one writer at a time
(``BEGIN IMMEDIATE``). Either way, with N reads left exactly N concurrent reads succeed,
across any number of server processes sharing the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from coffer.domain.read_limits import LimitState, ReadLimits


def limit_columns(table: sa.Table) -> tuple[sa.Column[Any], ...]:
    """The limit columns of ``table``, in ``LimitState`` field order."""
    return (
        table.c.expires_at,
        table.c.max_reads,
        table.c.read_count,
        table.c.burn,
        table.c.sealed_at,
    )


LIMIT_WIDTH = 5  # len(limit_columns(...))


def limit_state(values: Sequence[Any]) -> LimitState:
    """Builds the LimitState from the ``limit_columns`` values of one row."""
    expires_at, max_reads, read_count, burn, sealed_at = values
    return LimitState(
        expires_at=expires_at,
        max_reads=max_reads,
        read_count=read_count,
        burn=bool(burn),
        sealed_at=sealed_at,
    )


def consume_read(
    conn: sa.Connection, table: sa.Table, row_id: str, now: float, *, updated_at: float
) -> LimitState | None:
    """Counts one read of the row and returns its state after the read; None when the row
    may not be read (gone, expired, sealed or out of reads) or no longer holds the value the
    caller read (``updated_at`` moved on: a new value counts its own reads), having changed
    nothing."""
    statement = (
        sa.update(table)
        .where(
            table.c.id == row_id,
            table.c.updated_at == updated_at,
            table.c.sealed_at.is_(None),
            sa.or_(table.c.expires_at.is_(None), table.c.expires_at > now),
            sa.or_(table.c.max_reads.is_(None), table.c.read_count < table.c.max_reads),
        )
        .values(read_count=table.c.read_count + 1)
        .returning(*limit_columns(table))
    )
    row = conn.execute(statement).first()
    return None if row is None else limit_state(tuple(row))


def current_row(
    conn: sa.Connection, table: sa.Table, row_id: str
) -> tuple[LimitState, float] | None:
    """Returns the row's limits and ``updated_at`` as now committed, or None when gone."""
    row = conn.execute(
        sa.select(*limit_columns(table), table.c.updated_at).where(table.c.id == row_id)
    ).first()
    if row is None:
        return None
    values = tuple(row)
    return limit_state(values[:LIMIT_WIDTH]), values[LIMIT_WIDTH]


def seal_row(conn: sa.Connection, table: sa.Table, row_id: str, now: float) -> None:
    """Marks the row sealed: kept, unreadable until reset."""
    conn.execute(sa.update(table).where(table.c.id == row_id).values(sealed_at=now))


def apply_limits(
    conn: sa.Connection, table: sa.Table, row_id: str, limits: ReadLimits, now: float
) -> None:
    """Gives the row these limits (the TTL counted from ``now``) with no reads counted."""
    state = limits.state_from(now)
    conn.execute(
        sa.update(table)
        .where(table.c.id == row_id)
        .values(
            expires_at=state.expires_at,
            max_reads=state.max_reads,
            burn=state.burn,
            read_count=0,
            sealed_at=None,
        )
    )


def update_limits(conn: sa.Connection, table: sa.Table, row_id: str, **values: Any) -> None:
    """Sets some of ``expires_at``, ``max_reads``, ``burn``, ``read_count``, ``sealed_at``."""
    allowed = {"expires_at", "max_reads", "burn", "read_count", "sealed_at"}
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"not limit columns: {sorted(unknown)}")
    if values:
        conn.execute(sa.update(table).where(table.c.id == row_id).values(**values))


def reset_reads(conn: sa.Connection, table: sa.Table, row_id: str) -> None:
    """Zeroes the read count and unseals the row (a new value, or an explicit reset)."""
    update_limits(conn, table, row_id, read_count=0, sealed_at=None)


def not_expired(table: sa.Table, now: float) -> sa.ColumnElement[bool]:
    """The condition that hides expired rows from every listing and lookup."""
    return sa.or_(table.c.expires_at.is_(None), table.c.expires_at > now)


def is_limited(table: sa.Table) -> sa.ColumnElement[bool]:
    """The condition selecting rows with a TTL or a read limit."""
    return sa.or_(table.c.expires_at.is_not(None), table.c.max_reads.is_not(None))
