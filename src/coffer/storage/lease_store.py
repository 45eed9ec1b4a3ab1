"""Leases on background jobs: at most one live holder per job name.

A lease is a row of ``job_leases`` (name, holder, acquired_at, expires_at). ``acquire`` takes
a missing or run-out lease, or renews the caller's own, with one conditional UPDATE; its row
count is the answer, so two nodes racing for a job cannot both win. On PostgreSQL the second
UPDATE waits for the first's row lock and then re-checks its condition against the committed
row (READ COMMITTED); on SQLite ``BEGIN IMMEDIATE`` runs one writer at a time. Call each
function inside a transaction (``engine.begin()``) and act on the answer only after it
commits. Times are Unix seconds on one clock for every node: ``database_now``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa

from coffer.storage.database import dialect_insert
from coffer.storage.tables import job_leases


@dataclass(frozen=True)
class LeaseRow:
    """Who holds job ``name`` since when, until when (a lease past ``expires_at`` is free)."""

    name: str
    holder: str
    acquired_at: float
    expires_at: float


def database_now(conn: sa.Connection) -> float:
    """Returns the time leases are measured on: the PostgreSQL server's clock, so that nodes
    whose clocks disagree still agree on when a lease runs out; on SQLite this machine's clock
    (every node of a SQLite vault shares its file, hence its machine)."""
    if conn.dialect.name == "postgresql":
        value = conn.execute(sa.text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one()
        return float(value)
    return time.time()


def acquire(conn: sa.Connection, name: str, holder: str, now: float, seconds: float) -> bool:
    """Takes or renews the lease on job ``name`` for ``holder`` until ``now + seconds``.
    Returns True when ``holder`` holds it (it was free, had run out before ``now``, or was
    already theirs); False when another holder's lease is still live, which is left as it
    is. Raises ValueError for an empty holder."""
    if not holder:
        raise ValueError("a lease needs a holder")
    # A placeholder that has always run out, so the one UPDATE below decides every case.
    placeholder = dialect_insert(conn)(job_leases).values(
        name=name, holder="", acquired_at=now, expires_at=0.0
    )
    conn.execute(placeholder.on_conflict_do_nothing(index_elements=["name"]))
    taken = conn.execute(
        sa.update(job_leases)
        .where(
            job_leases.c.name == name,
            sa.or_(job_leases.c.holder == holder, job_leases.c.expires_at < now),
        )
        .values(
            holder=holder,
            acquired_at=sa.case(
                (job_leases.c.holder == holder, job_leases.c.acquired_at), else_=now
            ),
            expires_at=now + seconds,
        )
    )
    return taken.rowcount == 1


def release(conn: sa.Connection, name: str, holder: str) -> bool:
    """Gives up ``holder``'s lease on job ``name`` so another node may take it at once.
    Returns False (and changes nothing) when the lease is not ``holder``'s."""
    released = conn.execute(
        sa.delete(job_leases).where(job_leases.c.name == name, job_leases.c.holder == holder)
    )
    return released.rowcount == 1


def holders(conn: sa.Connection) -> list[LeaseRow]:
    """Returns every lease by job name, live or run out."""
    rows = conn.execute(
        sa.select(
            job_leases.c.name,
            job_leases.c.holder,
            job_leases.c.acquired_at,
            job_leases.c.expires_at,
        ).order_by(job_leases.c.name)
    )
    return [
        LeaseRow(str(name), str(holder), float(acquired_at), float(expires_at))
        for name, holder, acquired_at, expires_at in rows
    ]
