"""The one place that appends to the audit log.

Entries are written on the caller's connection, inside the caller's transaction, so a change
and its record commit together or not at all. The writer accepts names and metadata only:
there is no parameter through which a secret value could travel. Each entry carries a MAC
of its canonical bytes, so the sealer can tell entries coffer wrote from rows put into the
table by other means; the sealer later gives it its place in the Merkle tree.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.records import RECORD_COLUMNS, canonical_from_values
from coffer.crypto.audit_keys import AuditKeys
from coffer.domain.events import Event, Result
from coffer.domain.models import CallContext
from coffer.storage.ids import new_id
from coffer.storage.json_text import canonical_json
from coffer.storage.raw_statements import CompiledStatement, RawTransaction
from coffer.storage.tables import audit_log

_MAX_USER_AGENT = 256

_WRITTEN_COLUMNS = (*RECORD_COLUMNS[1:], "mac")
_INSERT_ALL_COLUMNS = (
    sa.insert(audit_log).values({name: sa.bindparam(name) for name in _WRITTEN_COLUMNS}).inline()
)
SYSTEM_ACTOR_KIND = "system"

Metadata = Mapping[str, str | int | float | bool | None]


class AuditWriter:
    """Appends MAC-carrying audit entries."""

    def __init__(self, keys: AuditKeys) -> None:
        self._keys = keys
        self._raw_inserts: dict[str, CompiledStatement] = {}

    def entry(
        self,
        ctx: CallContext | None,
        action: Event,
        *,
        project: str | None = None,
        environment: str | None = None,
        key: str | None = None,
        result: Result = Result.SUCCESS,
        metadata: Metadata | None = None,
        org_id: str | None = None,
    ) -> dict[str, Any]:
        """Returns the row of one entry (names and metadata only; no value can enter).
        Without a ``ctx`` the actor is the system itself (background work). The reason the
        caller stated (``ctx.reason``) goes into the metadata as ``reason``, unless the
        metadata has its own (an ``access.denied`` entry's is the refusal's)."""
        actor = ctx.actor if ctx else None
        user_agent = (ctx.user_agent or "")[:_MAX_USER_AGENT] if ctx else ""
        if ctx is not None and ctx.reason is not None:  # the caller's stated reason
            metadata = {"reason": ctx.reason, **(metadata or {})}
        row: dict[str, Any] = {
            "leaf_index": None,
            "id": new_id(),
            "timestamp": round(time.time(), 6),
            "action": str(action),
            "actor_id": (actor.id or None) if actor else None,
            "actor_kind": str(actor.kind) if actor else SYSTEM_ACTOR_KIND,
            "org_id": (actor.org_id or org_id or None) if actor else org_id,
            "project": project,
            "environment": environment,
            "key": key,
            "source_ip": ctx.source_ip if ctx else None,
            "user_agent": user_agent or None,
            "result": str(result),
            "metadata": canonical_json(dict(metadata or {})),
        }
        row["mac"] = self._keys.mac(
            canonical_from_values([row[name] for name in RECORD_COLUMNS], None)
        )
        return row

    def append(
        self,
        conn: sa.Connection,
        ctx: CallContext | None,
        action: Event,
        *,
        project: str | None = None,
        environment: str | None = None,
        key: str | None = None,
        result: Result = Result.SUCCESS,
        metadata: Metadata | None = None,
        org_id: str | None = None,
    ) -> str:
        """Appends one entry on the caller's connection and returns its id."""
        row = self.entry(
            ctx,
            action,
            project=project,
            environment=environment,
            key=key,
            result=result,
            metadata=metadata,
            org_id=org_id,
        )
        conn.execute(_INSERT_ALL_COLUMNS, row)
        entry_id: str = row["id"]
        return entry_id

    def append_rows(
        self, engine: Engine, tx: RawTransaction, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Appends ``entry()`` rows inside a driver-level transaction (the hot read path's
        group commit)."""
        statement = self._raw_inserts.get(engine.dialect.name)
        if statement is None:
            statement = CompiledStatement(_INSERT_ALL_COLUMNS, engine)
            self._raw_inserts[engine.dialect.name] = statement
        tx.execute_many(statement, rows)
