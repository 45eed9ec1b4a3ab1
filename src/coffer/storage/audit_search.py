"""The audit query: filters over an organization's entries, newest first, a page at a time."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from coffer.domain.audit_query import AuditFilter, like_pattern
from coffer.storage.audit_store import RECORD_SELECT
from coffer.storage.tables import audit_log


def search(
    conn: sa.Connection, org_id: str, query: AuditFilter, *, actor_ids: tuple[str, ...] = ()
) -> list[tuple[Any, ...]]:
    """Returns up to ``query.limit + 1`` entries of ``org_id`` matching ``query``, newest
    first, as (record values..., seq). ``actor_ids`` replaces ``query.actor`` when given
    (an e-mail resolved to its identity)."""
    c = audit_log.c
    conditions: list[sa.ColumnElement[bool]] = [c.org_id == org_id]
    if query.since is not None:
        conditions.append(c.timestamp >= query.since)
    if query.until is not None:
        conditions.append(c.timestamp <= query.until)
    if query.action is not None:
        if query.action == "*":
            pass
        elif query.action.endswith(".*"):
            conditions.append(c.action.like(query.action[:-1] + "%"))
        else:
            conditions.append(c.action == query.action)
    if query.key is not None:
        pattern, is_glob = like_pattern(query.key)
        conditions.append(c.key.like(pattern, escape="\\") if is_glob else c.key == pattern)
    if actor_ids:
        conditions.append(c.actor_id.in_(actor_ids))
    elif query.actor is not None:
        conditions.append(c.actor_id == query.actor)
    if query.project is not None:
        conditions.append(c.project == query.project)
    if query.environment is not None:
        conditions.append(c.environment == query.environment)
    if query.before_seq is not None:
        conditions.append(c.seq < query.before_seq)
    statement = (
        sa.select(*RECORD_SELECT, c.seq)
        .where(*conditions)
        .order_by(c.seq.desc())
        .limit(query.limit + 1)
    )
    return [tuple(row) for row in conn.execute(statement)]
