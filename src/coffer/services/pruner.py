"""Destroys what has passed its TTL: vault secrets, ephemeral secrets and shares.

An expired secret is unreadable from the moment it expires; the pruner only reclaims it,
recording ``secret.pruned`` for each. The server runs it as a background job over every
organization; ``coffer prune`` (``POST /api/v1/prune``) runs it for the caller's
organization. It works in batches, each its own transaction, and finishes by making the
destroyed rows (and any burned since the last run) unrecoverable from SQLite's files.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.events import Event
from coffer.domain.models import CallContext, EphemeralKind, PruneReport
from coffer.services.access import AccessGate
from coffer.services.ephemeral_rows import EphemeralRows
from coffer.services.secret_ops import SecretOps
from coffer.storage import ephemeral_store, secret_store
from coffer.storage.database import scrub_deleted

BATCH = 500


class Pruner:
    """Removes expired secrets, in one organization or all."""

    def __init__(
        self, engine: Engine, ops: SecretOps, ephemeral: EphemeralRows, gate: AccessGate
    ) -> None:
        self._engine = engine
        self._ops = ops
        self._ephemeral = ephemeral
        self._gate = gate

    def prune(self, ctx: CallContext | None) -> PruneReport:
        """Destroys every secret, ephemeral secret and share past its TTL in the caller's
        organization (needs the admin role), or in every organization without ``ctx`` (the
        server's job). Returns how many of each it destroyed."""
        if ctx is not None:
            self._gate.require(ctx, Action.EPHEMERAL_MANAGE)
        org_id = ctx.actor.org_id if ctx else None
        counts = {"secrets": 0, EphemeralKind.SECRET: 0, EphemeralKind.SHARE: 0}
        while True:
            now = time.time()
            with self._engine.begin() as conn:
                vault = secret_store.expired_secrets(conn, now, BATCH, org_id=org_id)
                for place in vault:
                    if self._ops.destroy_expired(conn, ctx, place, Event.SECRET_PRUNED):
                        counts["secrets"] += 1
                rows = ephemeral_store.expired(conn, now, BATCH, org_id=org_id)
                for row in rows:
                    if self._ephemeral.destroy(conn, ctx, row, Event.SECRET_PRUNED):
                        counts[row.kind] += 1
            if len(vault) < BATCH and len(rows) < BATCH:
                break
        scrub_deleted(self._engine)
        return PruneReport(
            secrets=counts["secrets"],
            ephemeral=counts[EphemeralKind.SECRET],
            shares=counts[EphemeralKind.SHARE],
        )
