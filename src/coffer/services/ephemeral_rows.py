"""The life of a row of ``ephemeral_secrets`` (an ephemeral secret or a share), shared by
both services and the pruner: count and record a read, burn or seal after the last one,
destroy one past its TTL; each step with its audit entry. Callers own the transaction,
except ``expire``."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.errors import CofferError
from coffer.domain.events import Event
from coffer.domain.models import CallContext, EphemeralInfo, EphemeralKind
from coffer.domain.read_limits import LimitState, ReadLimits
from coffer.services.limited_reads import count_read, counters, last_read_event, sealed_if_last
from coffer.storage import ephemeral_store, read_limits
from coffer.storage.ephemeral_store import EphemeralRow
from coffer.storage.tables import ephemeral_secrets

DEFAULT_TTL_SECONDS = 86_400  # an ephemeral secret or share created without a TTL lives a day


def with_default_ttl(limits: ReadLimits) -> ReadLimits:
    """``limits`` with the default TTL when none was given: ephemeral means it ends."""
    if limits.ttl_seconds is not None:
        return limits
    return ReadLimits(ttl_seconds=DEFAULT_TTL_SECONDS, max_reads=limits.max_reads, burn=limits.burn)


def info_of(row: EphemeralRow, limits: LimitState | None = None) -> EphemeralInfo:
    """The row's metadata, with ``limits`` instead of the stored ones when given."""
    return EphemeralInfo(
        key=row.key,
        kind=row.kind,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        limits=row.limits if limits is None else limits,
    )


def _kind_label(row: EphemeralRow) -> str:
    """``metadata.kind`` of the row's audit entries."""
    return "share" if row.kind is EphemeralKind.SHARE else "ephemeral"


class EphemeralRows:
    """Counts, burns, seals and destroys ephemeral rows with their audit entries."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self._engine = engine
        self.audit = audit

    def read(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        row: EphemeralRow,
        *,
        now: float,
        missing: CofferError,
        sealed: CofferError,
    ) -> LimitState:
        """Counts one read of a live row (raising ``missing`` or ``sealed`` as
        ``limited_reads.count_read`` does), records ``secret.read`` and, after the last
        allowed read, burns (``secret.burned``) or seals (``secret.sealed``) the row.
        Returns the state after the read."""
        state = count_read(
            conn,
            ephemeral_secrets,
            row.id,
            row.limits,
            updated_at=row.updated_at,
            now=now,
            missing=missing,
            sealed=sealed,
        )
        kind = _kind_label(row)
        self.audit.append(
            conn, ctx, Event.SECRET_READ, key=row.key, metadata={"kind": kind, **counters(state)}
        )
        event = last_read_event(state)
        if event is None:
            return state
        if event is Event.SECRET_SEALED:
            read_limits.seal_row(conn, ephemeral_secrets, row.id, now)
        else:
            ephemeral_store.delete(conn, row.id)
        self.audit.append(
            conn,
            ctx,
            event,
            key=row.key,
            metadata={"kind": kind, "read_count": state.read_count, "max_reads": state.max_reads},
        )
        return sealed_if_last(state)

    def destroy(
        self, conn: sa.Connection, ctx: CallContext | None, row: EphemeralRow, event: Event
    ) -> bool:
        """Destroys a row past its TTL and records ``event`` (``secret.expired`` or
        ``secret.pruned``); False, recording nothing, when it was already gone."""
        if not ephemeral_store.delete(conn, row.id):
            return False
        self.audit.append(
            conn,
            ctx,
            event,
            key=row.key,
            metadata={"kind": _kind_label(row), "expired_at": int(row.limits.expires_at or 0)},
            org_id=row.org_id,
        )
        return True

    def expire(self, ctx: CallContext | None, row: EphemeralRow) -> None:
        """Destroys a row found past its TTL (``secret.expired``), in its own transaction."""
        with self._engine.begin() as conn:
            self.destroy(conn, ctx, row, Event.SECRET_EXPIRED)
