"""The one place that appends to the audit log.

Entries are written on the caller's connection, inside the caller's transaction, so a change
and its record commit together or not at all. The writer accepts names and metadata only:
there is no parameter through which a secret value could travel.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import sqlalchemy as sa

from coffer.domain.events import Event, Result
from coffer.domain.models import CallContext
from coffer.storage.ids import new_id
from coffer.storage.tables import audit_log

_MAX_USER_AGENT = 256

_INSERT = sa.insert(audit_log)


class AuditWriter:
    """Appends audit entries. Later issues make the log tamper-evident behind this interface."""

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
        metadata: Mapping[str, str | int | float | bool | None] | None = None,
        org_id: str | None = None,
    ) -> str:
        """Appends one entry and returns its id."""
        entry_id = new_id()
        actor = ctx.actor if ctx else None
        conn.execute(
            _INSERT,
            {
                "id": entry_id,
                "timestamp": time.time(),
                "action": str(action),
                "actor_id": actor.id if actor else None,
                "actor_kind": str(actor.kind) if actor else None,
                "org_id": actor.org_id if actor else org_id,
                "project": project,
                "environment": environment,
                "key": key,
                "source_ip": ctx.source_ip if ctx else None,
                "user_agent": (ctx.user_agent or "")[:_MAX_USER_AGENT] or None if ctx else None,
                "result": str(result),
                "metadata": dict(metadata or {}),
            },
        )
        return entry_id
