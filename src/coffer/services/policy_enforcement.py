"""Environment policies on the write path: every new secret version, and every inventory
change, is checked against the policy of its environment's name before anything is written
(``check_write``); an inventory change given with a write is saved and audited in the same
transaction (``record_inventory``). Callers own the transaction."""

from __future__ import annotations

import sqlalchemy as sa

from coffer.audit.writer import AuditWriter
from coffer.domain.events import Event
from coffer.domain.inventory import InventoryChange, InventoryFields, write_refusal
from coffer.domain.models import CallContext
from coffer.storage import inventory_store, policy_store


def check_write(
    conn: sa.Connection,
    org_id: str,
    environment: str,
    secret_id: str,
    key: str,
    change: InventoryChange | None,
    *,
    new_secret: bool = False,
) -> InventoryFields | None:
    """Raises PolicyViolation (naming the rules and how to fix them) when secret ``key``,
    with ``change`` applied to its metadata, would break the policy for environments called
    ``environment``. Returns the metadata to save when ``change`` is given, else None.

    Costs one primary-key query when the environment has no policy and nothing changes, and
    one more (the secret's metadata, skipped for a ``new_secret``) otherwise."""
    policy = policy_store.policy_for(conn, org_id, environment)
    if policy is None and change is None:
        return None
    current = InventoryFields() if new_secret else inventory_store.inventory_of(conn, secret_id)
    after = change.applied_to(current) if change is not None else current
    if policy is not None:
        refusal = write_refusal(policy, after, key)
        if refusal is not None:
            raise refusal
    return after if change is not None else None


def record_inventory(
    conn: sa.Connection,
    ctx: CallContext,
    audit: AuditWriter,
    place: tuple[str, str, str],
    secret_id: str,
    fields: InventoryFields,
    change: InventoryChange,
    now: float,
) -> None:
    """Saves the secret's metadata ``fields`` (the result of ``change``) and records
    ``inventory.updated`` with the changed fields and their new values; ``place`` is the
    secret's (project, environment, key)."""
    project, environment, key = place
    inventory_store.save_inventory(conn, secret_id, fields, by=ctx.actor.id, now=now)
    audit.append(
        conn,
        ctx,
        Event.INVENTORY_UPDATED,
        project=project,
        environment=environment,
        key=key,
        metadata=change.audit_fields(),
    )
