"""The read-limit rules every limited secret shares, vault secret or ephemeral alike:
count a read exactly once, refuse a sealed or spent one, and say what the last read does."""

from __future__ import annotations

import time
from dataclasses import replace

import sqlalchemy as sa

from coffer.domain.errors import CofferError, Contention
from coffer.domain.events import Event
from coffer.domain.read_limits import LimitState
from coffer.storage import read_limits


def count_read(
    conn: sa.Connection,
    table: sa.Table,
    row_id: str,
    limits: LimitState,
    *,
    updated_at: float,
    now: float,
    missing: CofferError,
    sealed: CofferError,
) -> LimitState:
    """Counts one read of a limited row, whose value as of ``updated_at`` the caller read,
    and returns its state after the read (an unlimited row's state comes back unchanged,
    uncounted). Raises ``sealed`` when it is sealed, ``missing`` when it is gone, expired or
    out of reads, and Contention when a new value replaced the one read meanwhile (that
    value's reads are its own); in each case having counted nothing."""
    if not limits.limited:
        return limits
    counted = read_limits.consume_read(conn, table, row_id, now, updated_at=updated_at)
    if counted is not None:
        return counted
    latest = read_limits.current_row(conn, table, row_id)
    if latest is None or latest[0].expired(now):
        raise missing
    state, latest_update = latest
    if state.sealed_at is not None:
        raise sealed
    if latest_update != updated_at and state.limited:
        raise Contention("the secret got a new value while it was read; read it again")
    raise missing


def last_read_event(state: LimitState) -> Event | None:
    """``secret.burned`` or ``secret.sealed`` when the read that produced ``state`` was the
    last one allowed, else None."""
    if state.max_reads is None or state.read_count < state.max_reads:
        return None
    return Event.SECRET_BURNED if state.burn else Event.SECRET_SEALED


def sealed_if_last(state: LimitState) -> LimitState:
    """``state`` as the caller sees it after the read: sealed when that read sealed it."""
    if last_read_event(state) is Event.SECRET_SEALED:
        return replace(state, sealed_at=time.time())
    return state


def counters(state: LimitState) -> dict[str, str | int | None]:
    """A limited read's counters as audit metadata records them."""
    fields: dict[str, str | int | None] = {}
    if state.max_reads is not None:
        fields["read_count"] = state.read_count
        fields["max_reads"] = state.max_reads
    if state.expires_at is not None:
        fields["expires_at"] = int(state.expires_at)
    return fields
