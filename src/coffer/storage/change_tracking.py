"""Which committed writes make a node's caches stale.

A node caches a token's identity and grants, a secret's current ciphertext and unwrapped data
keys (see ``services.read_cache``). Every write to a table those caches are built from is
noticed here, on the engine, whichever service made it: the tables written are gathered per
connection and reported once the connection goes back to the pool, that is after its
transaction committed. A rolled-back transaction reports nothing. A statement marked with
the execution option ``CACHE_NEUTRAL`` (a session's idle clock) is not counted.

A write in SQL text (``text()``, ``exec_driver_sql``) counts as a write to every table.
Writes on the driver's own cursor (``storage.raw_statements``) are not seen: only the audit
log, which no cache reads, is written that way.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine


class CacheFamily(IntEnum):
    """A group of cached data that one kind of change makes stale."""

    ACCESS = 0  # tokens, identities, roles, grants, restrictions
    SECRETS = 1  # the current version and ciphertext of secrets
    KEYS = 2  # unwrapped data keys and root-key generations


FAMILIES = tuple(CacheFamily)

_A, _S, _K = CacheFamily.ACCESS, CacheFamily.SECRETS, CacheFamily.KEYS
WATCHED_TABLES: dict[str, frozenset[CacheFamily]] = {
    "organizations": frozenset({_A, _S}),
    "api_tokens": frozenset({_A}),
    "users": frozenset({_A}),
    "machines": frozenset({_A}),
    "grants": frozenset({_A}),
    "projects": frozenset({_A, _S, _K}),
    "environments": frozenset({_A, _S}),
    "secrets": frozenset({_S}),
    "secret_versions": frozenset({_S}),
    "data_keys": frozenset({_S, _K}),
    "root_keys": frozenset({_K}),
    # The hot read path caches whether an environment's reads must state a reason.
    "environment_policies": frozenset({_S}),
}

CACHE_NEUTRAL = "coffer_cache_neutral"
_PENDING = "coffer_changed_families"
_COMMITTED = "coffer_committed_families"


_DML = ("insert", "update", "delete", "replace")


def _families_of(statement: Any) -> frozenset[CacheFamily]:
    if isinstance(statement, sa.TextClause | str):
        # SQL text names its tables only in words: assume the worst for a write.
        text = statement.text if isinstance(statement, sa.TextClause) else statement
        return frozenset(FAMILIES) if text.lstrip().lower().startswith(_DML) else frozenset()
    if not isinstance(statement, sa.Insert | sa.Update | sa.Delete):
        return frozenset()
    if statement.get_execution_options().get(CACHE_NEUTRAL):
        return frozenset()
    table = statement.table
    name = getattr(table, "name", None)
    return WATCHED_TABLES.get(name, frozenset()) if isinstance(name, str) else frozenset()


def track_changes(engine: Engine, on_committed: Callable[[frozenset[CacheFamily]], None]) -> None:
    """Calls ``on_committed(families)`` after every committed transaction on ``engine`` that
    wrote a watched table, before the connection serves anyone else. ``on_committed`` must
    not raise (a failure to tell others is the callee's to report)."""

    @event.listens_for(engine, "before_execute")
    def _note(conn: sa.Connection, statement: Any, *_args: Any) -> None:
        families = _families_of(statement)
        if families:
            conn.info.setdefault(_PENDING, set()).update(families)

    @event.listens_for(engine, "commit")
    def _committing(conn: sa.Connection) -> None:
        pending = conn.info.pop(_PENDING, None)
        if pending:
            conn.info.setdefault(_COMMITTED, set()).update(pending)

    @event.listens_for(engine, "rollback")
    def _rolled_back(conn: sa.Connection) -> None:
        if conn.invalidated:
            return  # the connection was lost: its record (and what it noted) is discarded
        conn.info.pop(_PENDING, None)

    @event.listens_for(engine.pool, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        committed = record.info.pop(_COMMITTED, None) if record is not None else None
        if committed:
            on_committed(frozenset(committed))
