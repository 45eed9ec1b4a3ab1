"""Standalone ephemeral secrets: named within an organization, sealed by the server under
the key-encryption key, always expiring (a day unless told otherwise), optionally limited in
reads, and burned or sealed by their last read. Each use case owns its transaction.

Who may do what: anyone in the organization (people and machines) creates, reads, lists and
looks at them; changing or deleting one takes its creator or an admin.
"""

from __future__ import annotations

import time
from dataclasses import replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import Metadata
from coffer.crypto.aad import ephemeral_secret_aad
from coffer.domain.access import Action
from coffer.domain.errors import AccessDenied, Conflict, Gone, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.models import (
    CallContext,
    EphemeralInfo,
    EphemeralKind,
    RevealedEphemeral,
)
from coffer.domain.names import validate_key_name
from coffer.domain.read_limits import LimitChange, ReadLimits
from coffer.domain.secret_value import SecretValue
from coffer.services.access import AccessGate
from coffer.services.ephemeral_rows import EphemeralRows, info_of, with_default_ttl
from coffer.services.kek_ring import KekRing
from coffer.services.secret_ops import Limits, validate_write
from coffer.storage import ephemeral_store, read_limits
from coffer.storage.database import scrub_deleted
from coffer.storage.ephemeral_store import EphemeralRow
from coffer.storage.ids import new_id
from coffer.storage.tables import ephemeral_secrets


def _not_found(key: str) -> NotFound:
    return NotFound(f"ephemeral secret {key!r} not found", field="key")


def _sealed(key: str) -> Gone:
    return Gone(
        f"ephemeral secret {key!r} is sealed: its read limit was reached; its creator or an "
        "admin must reset it",
        field="key",
    )


class EphemeralService:
    """Creates, reads, changes, deletes and lists ephemeral secrets and shares."""

    def __init__(
        self,
        engine: Engine,
        keks: KekRing,
        rows: EphemeralRows,
        gate: AccessGate,
        limits: Limits,
    ) -> None:
        self._engine = engine
        self._keks = keks
        self._rows = rows
        self._audit = rows.audit
        self._gate = gate
        self._limits = limits

    # Standalone ephemeral secrets -------------------------------------------------------

    def create(
        self, ctx: CallContext, key: str, value: SecretValue, limits: ReadLimits
    ) -> EphemeralInfo:
        """Stores a new ephemeral secret (TTL ``DEFAULT_TTL_SECONDS`` unless given) and
        records ``secret.created`` with its limits. Raises InvalidInput/TooLarge for a bad
        key or value and Conflict when the organization already has a live one by that
        name; changes nothing then."""
        validate_write(key, value, None, self._limits)
        limits = with_default_ttl(limits)
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        org_id = ctx.actor.org_id
        now = time.time()
        try:
            with self._engine.begin() as conn:
                existing = ephemeral_store.find(
                    conn, org_id, EphemeralKind.SECRET, key, for_update=True
                )
                if existing is not None:
                    if not existing.limits.expired(now):
                        raise Conflict(
                            f"ephemeral secret {key!r} already exists; change it with PATCH "
                            "or delete it first",
                            field="key",
                        )
                    self._rows.destroy(conn, ctx, existing, Event.SECRET_EXPIRED)
                row_id = new_id()
                row = ephemeral_store.insert(
                    conn,
                    row_id=row_id,
                    org_id=org_id,
                    kind=EphemeralKind.SECRET,
                    key=key,
                    ciphertext=self._seal(conn, org_id, row_id, key, value),
                    created_by=ctx.actor.id,
                    limits=limits,
                    now=now,
                )
                self._audit.append(
                    conn,
                    ctx,
                    Event.SECRET_CREATED,
                    key=key,
                    metadata={"kind": "ephemeral", **limits.audit_fields()},
                )
                return info_of(row)
        except sa.exc.IntegrityError:  # a concurrent create of the same name won
            raise Conflict(f"ephemeral secret {key!r} already exists", field="key") from None

    def read(self, ctx: CallContext, key: str) -> RevealedEphemeral:
        """Returns the value, counting the read (the last allowed one burns or seals it in
        the same transaction) and recording ``secret.read``. Raises NotFound for an unknown,
        burned or expired secret and Gone for a sealed one; a failed read counts nothing."""
        validate_key_name(key)
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        now = time.time()
        with self._engine.begin() as conn:
            row = ephemeral_store.find(conn, ctx.actor.org_id, EphemeralKind.SECRET, key)
            if row is None:
                raise _not_found(key)
            if not row.limits.expired(now):
                value = self._open(conn, row)
                state = self._rows.read(
                    conn, ctx, row, now=now, missing=_not_found(key), sealed=_sealed(key)
                )
                return RevealedEphemeral(key=key, value=value, limits=state)
        self._rows.expire(ctx, row)
        raise _not_found(key)

    def info(self, ctx: CallContext, key: str) -> EphemeralInfo:
        """Returns the metadata and limits without reading (``HEAD``); counts and records
        nothing. Raises NotFound for an unknown, burned or expired secret."""
        validate_key_name(key)
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        with self._engine.begin() as conn:
            row = ephemeral_store.find(conn, ctx.actor.org_id, EphemeralKind.SECRET, key)
        if row is None or row.limits.expired(time.time()):
            raise _not_found(key)
        return info_of(row)

    def list_secrets(self, ctx: CallContext) -> list[EphemeralInfo]:
        """Returns the organization's live ephemeral secrets (metadata only), by name."""
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        with self._engine.begin() as conn:
            rows = ephemeral_store.list_live(
                conn, ctx.actor.org_id, EphemeralKind.SECRET, time.time()
            )
        return [info_of(row) for row in rows]

    def update(
        self,
        ctx: CallContext,
        key: str,
        *,
        value: SecretValue | None = None,
        change: LimitChange | None = None,
    ) -> EphemeralInfo:
        """Replaces the value (its reads then count afresh, unsealing it) and/or changes the
        limits (see ``LimitChange``); takes the creator or an admin. Records
        ``secret.updated`` and/or ``secret.limits_changed``. Raises InvalidInput when
        neither is given or one breaks a rule, NotFound for an unknown, burned or expired
        secret, AccessDenied for anyone else; changes nothing then."""
        validate_key_name(key)
        if value is None and change is None:
            raise InvalidInput("give a value or a limit change", field="body")
        if change is not None and change.removes_ttl:
            raise InvalidInput(
                "ttl_seconds: an ephemeral secret always expires; give a new TTL instead of null",
                field="ttl_seconds",
            )
        if value is not None:
            validate_write(key, value, None, self._limits)
        self._authorize_change(ctx, key)
        now = time.time()
        with self._engine.begin() as conn:
            row = self._live_for_update(conn, ctx, key, now)
            # A new value counts its reads afresh (unsealed), so a new limit is checked
            # against no reads.
            fresh = replace(row.limits, read_count=0, sealed_at=None)
            before = row.limits if value is None else fresh
            after = before
            if change is not None:
                after = change.applied_to(before, now)
                read_limits.update_limits(
                    conn, ephemeral_secrets, row.id, **change.column_values(now)
                )
            if value is not None:
                ciphertext = self._seal(conn, row.org_id, row.id, key, value)
                ephemeral_store.replace_value(conn, row.id, ciphertext, now)
                read_limits.reset_reads(conn, ephemeral_secrets, row.id)
                self._audit.append(
                    conn, ctx, Event.SECRET_UPDATED, key=key, metadata={"kind": "ephemeral"}
                )
            if change is not None:
                metadata: Metadata = {"kind": "ephemeral", **change.audit_fields()}
                self._audit.append(
                    conn, ctx, Event.SECRET_LIMITS_CHANGED, key=key, metadata=metadata
                )
            info = info_of(row, after)
            return info if value is None else replace(info, updated_at=now)

    def delete(self, ctx: CallContext, key: str) -> None:
        """Destroys the ephemeral secret (``secret.deleted``); takes its creator or an admin.
        Raises NotFound for an unknown, burned or expired one."""
        validate_key_name(key)
        self._authorize_change(ctx, key)
        with self._engine.begin() as conn:
            row = self._live_for_update(conn, ctx, key, time.time())
            ephemeral_store.delete(conn, row.id)
            self._audit.append(
                conn, ctx, Event.SECRET_DELETED, key=key, metadata={"kind": "ephemeral"}
            )
        scrub_deleted(self._engine)

    def _authorize_change(self, ctx: CallContext, key: str) -> None:
        """Lets the creator through; anyone else needs EPHEMERAL_MANAGE (admin). Checked
        before the change's transaction, as the gate may write ``access.denied``."""
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        with self._engine.begin() as conn:
            row = ephemeral_store.find(conn, ctx.actor.org_id, EphemeralKind.SECRET, key)
        if row is not None and row.created_by != ctx.actor.id:
            self._gate.require(ctx, Action.EPHEMERAL_MANAGE)

    @staticmethod
    def _live_for_update(
        conn: sa.Connection, ctx: CallContext, key: str, now: float
    ) -> EphemeralRow:
        """The live row, locked; raises NotFound, or AccessDenied when someone else created
        it meanwhile and the caller is not an admin."""
        row = ephemeral_store.find(
            conn, ctx.actor.org_id, EphemeralKind.SECRET, key, for_update=True
        )
        if row is None or row.limits.expired(now):
            raise _not_found(key)
        if row.created_by != ctx.actor.id and not AccessGate.allows(ctx, Action.EPHEMERAL_MANAGE):
            raise AccessDenied(f"{Action.EPHEMERAL_MANAGE.value} needs the admin role")
        return row

    def _seal(
        self, conn: sa.Connection, org_id: str, row_id: str, key: str, value: SecretValue
    ) -> bytes:
        aad = ephemeral_secret_aad(org_id=org_id, secret_id=row_id, key=key)
        return self._keks.seal(conn, value.reveal_bytes(), aad)

    def _open(self, conn: sa.Connection, row: EphemeralRow) -> SecretValue:
        aad = ephemeral_secret_aad(org_id=row.org_id, secret_id=row.id, key=row.key)
        return SecretValue(self._keks.open(row.ciphertext, aad, conn).decode("utf-8"))
