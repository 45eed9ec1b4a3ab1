"""Standalone ephemeral secrets (named within an organization, sealed by the server) and
shares (client-side ciphertext behind an unguessable link). Both always expire, may carry a
read limit, and are burned or sealed by their last read. Each use case owns its transaction.

Who may do what: anyone in the organization (people and machines) creates, reads and looks
at them; changing or deleting one takes its creator or an admin. A share is read by whoever
holds its link, recorded as an ``anonymous`` actor.
"""

from __future__ import annotations

import hmac
import re
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter, Metadata
from coffer.crypto.aad import ephemeral_secret_aad
from coffer.crypto.keys import KeyEncryptionKey
from coffer.crypto.tokens import hash_token, mint_link_token
from coffer.domain.access import Action
from coffer.domain.errors import AccessDenied, Conflict, Gone, InvalidInput, NotFound, TooLarge
from coffer.domain.events import Event
from coffer.domain.models import (
    Actor,
    ActorKind,
    CallContext,
    CreatedShare,
    EphemeralInfo,
    EphemeralKind,
    OpenedShare,
    RevealedEphemeral,
)
from coffer.domain.names import validate_key_name
from coffer.domain.read_limits import LimitChange, LimitState, ReadLimits
from coffer.domain.secret_value import SecretValue
from coffer.services.access import AccessGate
from coffer.services.limited_reads import count_read, counters, last_read_event
from coffer.services.secret_ops import Limits, validate_write
from coffer.storage import ephemeral_store, read_limits
from coffer.storage.ephemeral_store import EphemeralRow
from coffer.storage.ids import new_id
from coffer.storage.tables import ephemeral_secrets

DEFAULT_TTL_SECONDS = 86_400  # an ephemeral secret or share created without a TTL lives a day
ENVELOPE_OVERHEAD = 64  # a share's envelope: version, nonce and tag around the value
MAX_LINK_TOKEN_CHARS = 64
_PROOF = re.compile(r"[A-Za-z0-9_-]{43}")  # see crypto.share_cipher.share_proof


def with_default_ttl(limits: ReadLimits) -> ReadLimits:
    """``limits`` with the default TTL when none was given: ephemeral means it ends."""
    if limits.ttl_seconds is not None:
        return limits
    return ReadLimits(ttl_seconds=DEFAULT_TTL_SECONDS, max_reads=limits.max_reads, burn=limits.burn)


def _not_found(key: str) -> NotFound:
    return NotFound(f"ephemeral secret {key!r} not found", field="key")


def _sealed(key: str) -> Gone:
    return Gone(
        f"ephemeral secret {key!r} is sealed: its read limit was reached; its creator or an "
        "admin must reset it",
        field="key",
    )


_SHARE_NOT_FOUND = NotFound(
    "share not found: the link is wrong, has expired or was already opened", field="token"
)
_SHARE_SEALED = Gone("share is sealed: its read limit was reached", field="token")


def _info(row: EphemeralRow, limits: LimitState | None = None) -> EphemeralInfo:
    return EphemeralInfo(
        key=row.key,
        kind=row.kind,
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        limits=row.limits if limits is None else limits,
    )


def _proof_matches(row: EphemeralRow, proof: str) -> bool:
    """True when ``proof`` is the one the share was created with (compared in constant
    time, by hash)."""
    if row.proof_hash is None or not isinstance(proof, str) or len(proof) > 64:
        return False
    return hmac.compare_digest(row.proof_hash, hash_token(proof))


def _link_holder(org_id: str, source_ip: str | None, user_agent: str | None) -> CallContext:
    """The context of an unauthenticated share read, recorded in the share's organization."""
    actor = Actor(id="", kind=ActorKind.ANONYMOUS, org_id=org_id, name="link holder")
    return CallContext(actor=actor, source_ip=source_ip, user_agent=user_agent)


class EphemeralService:
    """Creates, reads, changes, deletes and lists ephemeral secrets and shares."""

    def __init__(
        self,
        engine: Engine,
        kek: KeyEncryptionKey,
        audit: AuditWriter,
        gate: AccessGate,
        limits: Limits,
    ) -> None:
        self._engine = engine
        self._kek = kek
        self._audit = audit
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
                    self.destroy(conn, ctx, existing, Event.SECRET_EXPIRED)
                row_id = new_id()
                ephemeral_store.insert(
                    conn,
                    row_id=row_id,
                    org_id=org_id,
                    kind=EphemeralKind.SECRET,
                    key=key,
                    ciphertext=self._seal(org_id, row_id, key, value),
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
                row = ephemeral_store.find(conn, org_id, EphemeralKind.SECRET, key)
                assert row is not None
                return _info(row)
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
                value = self._open(row)
                state = count_read(
                    conn,
                    ephemeral_secrets,
                    row.id,
                    row.limits,
                    now=now,
                    missing=_not_found(key),
                    sealed=_sealed(key),
                )
                self._record_read(conn, ctx, row, state)
                return RevealedEphemeral(key=key, value=value, limits=state)
        self._expire(ctx, row)
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
        return _info(row)

    def list_secrets(self, ctx: CallContext) -> list[EphemeralInfo]:
        """Returns the organization's live ephemeral secrets (metadata only), by name."""
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        with self._engine.begin() as conn:
            rows = ephemeral_store.list_live(
                conn, ctx.actor.org_id, EphemeralKind.SECRET, time.time()
            )
        return [_info(row) for row in rows]

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
        if value is not None:
            validate_write(key, value, None, self._limits)
        self._authorize_change(ctx, key)
        now = time.time()
        with self._engine.begin() as conn:
            row = self._live_for_update(conn, ctx, key, now)
            after = row.limits
            if change is not None:
                after = change.applied_to(row.limits, now)
                read_limits.update_limits(
                    conn, ephemeral_secrets, row.id, **change.column_values(now)
                )
            if value is not None:
                ciphertext = self._seal(row.org_id, row.id, key, value)
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
            latest = read_limits.current_state(conn, ephemeral_secrets, row.id) or after
            return _info(row, latest)

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

    # Shares ------------------------------------------------------------------------------

    def create_share(
        self, ctx: CallContext, envelope: bytes, proof: str, limits: ReadLimits
    ) -> CreatedShare:
        """Stores a share's client-side ciphertext (TTL ``DEFAULT_TTL_SECONDS`` unless given)
        with the hash of the proof that opens it (``share_cipher.share_proof``), and returns
        the token of its link, which is stored only as a hash. Records ``secret.created``
        (key: the share's id). Raises TooLarge for an envelope bigger than a value may be,
        InvalidInput for an empty one or a malformed proof."""
        if not envelope:
            raise InvalidInput("ciphertext must not be empty", field="ciphertext")
        if not isinstance(proof, str) or not _PROOF.fullmatch(proof):
            raise InvalidInput(
                "proof must be 43 characters of URL-safe base64 (SHA-256 of the share key)",
                field="proof",
            )
        limit = self._limits.max_value_bytes + ENVELOPE_OVERHEAD
        if len(envelope) > limit:
            raise TooLarge(
                f"ciphertext is {len(envelope)} bytes; the limit is {limit} bytes "
                "(COFFER_MAX_VALUE_BYTES plus the envelope)",
                field="ciphertext",
            )
        limits = with_default_ttl(limits)
        self._gate.require(ctx, Action.EPHEMERAL_USE)
        token = mint_link_token()
        row_id = new_id()
        now = time.time()
        with self._engine.begin() as conn:
            ephemeral_store.insert(
                conn,
                row_id=row_id,
                org_id=ctx.actor.org_id,
                kind=EphemeralKind.SHARE,
                key=row_id,
                ciphertext=envelope,
                created_by=ctx.actor.id,
                limits=limits,
                now=now,
                lookup_hash=hash_token(token),
                proof_hash=hash_token(proof),
            )
            self._audit.append(
                conn,
                ctx,
                Event.SECRET_CREATED,
                key=row_id,
                metadata={"kind": "share", **limits.audit_fields()},
            )
            row = ephemeral_store.find(conn, ctx.actor.org_id, EphemeralKind.SHARE, row_id)
            assert row is not None
        return CreatedShare(token=token, info=_info(row))

    def open_share(
        self, token: str, proof: str, *, source_ip: str | None, user_agent: str | None
    ) -> OpenedShare:
        """Returns a share's ciphertext to whoever holds its whole link (the token and, as
        ``proof``, evidence of the fragment's key), counting the read (the last allowed one
        burns or seals it) and recording ``secret.read`` by an anonymous actor. Raises
        NotFound for a wrong, expired or spent link or a wrong proof (which counts
        nothing), Gone for a sealed one."""
        now = time.time()
        with self._engine.begin() as conn:
            row = self._find_share(conn, token)
            if not _proof_matches(row, proof):
                raise _SHARE_NOT_FOUND
            if not row.limits.expired(now):
                state = count_read(
                    conn,
                    ephemeral_secrets,
                    row.id,
                    row.limits,
                    now=now,
                    missing=_SHARE_NOT_FOUND,
                    sealed=_SHARE_SEALED,
                )
                ctx = _link_holder(row.org_id, source_ip, user_agent)
                self._record_read(conn, ctx, row, state)
                return OpenedShare(ciphertext=row.ciphertext, limits=state)
        self._expire(None, row)
        raise _SHARE_NOT_FOUND

    def share_info(self, token: str) -> EphemeralInfo:
        """Returns a share's limits without reading it (the share page, ``HEAD``). Raises
        NotFound for a wrong, expired or spent link."""
        with self._engine.begin() as conn:
            row = self._find_share(conn, token)
        if row.limits.expired(time.time()):
            raise _SHARE_NOT_FOUND
        return _info(row)

    # Shared steps --------------------------------------------------------------------------

    @staticmethod
    def _find_share(conn: sa.Connection, token: str) -> EphemeralRow:
        if not token or len(token) > MAX_LINK_TOKEN_CHARS:
            raise _SHARE_NOT_FOUND
        row = ephemeral_store.find_by_lookup(conn, hash_token(token))
        if row is None:
            raise _SHARE_NOT_FOUND
        return row

    def _record_read(
        self, conn: sa.Connection, ctx: CallContext, row: EphemeralRow, state: LimitState
    ) -> None:
        """Records the read and, after the last allowed one, burns or seals the row."""
        kind = "share" if row.kind is EphemeralKind.SHARE else "ephemeral"
        self._audit.append(
            conn,
            ctx,
            Event.SECRET_READ,
            key=row.key,
            metadata={"kind": kind, **counters(state)},
        )
        event = last_read_event(state)
        if event is None:
            return
        if event is Event.SECRET_SEALED:
            read_limits.seal_row(conn, ephemeral_secrets, row.id, time.time())
        else:
            ephemeral_store.delete(conn, row.id)
        self._audit.append(
            conn,
            ctx,
            event,
            key=row.key,
            metadata={"kind": kind, "read_count": state.read_count, "max_reads": state.max_reads},
        )

    def destroy(
        self, conn: sa.Connection, ctx: CallContext | None, row: EphemeralRow, event: Event
    ) -> bool:
        """Destroys a row past its TTL and records ``event``; False when already gone."""
        if not ephemeral_store.delete(conn, row.id):
            return False
        kind = "share" if row.kind is EphemeralKind.SHARE else "ephemeral"
        self._audit.append(
            conn,
            ctx,
            event,
            key=row.key,
            metadata={"kind": kind, "expired_at": int(row.limits.expires_at or 0)},
            org_id=row.org_id,
        )
        return True

    def _expire(self, ctx: CallContext | None, row: EphemeralRow) -> None:
        """Destroys a row found past its TTL (``secret.expired``), in its own transaction."""
        with self._engine.begin() as conn:
            self.destroy(conn, ctx, row, Event.SECRET_EXPIRED)

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

    def _seal(self, org_id: str, row_id: str, key: str, value: SecretValue) -> bytes:
        aad = ephemeral_secret_aad(org_id=org_id, secret_id=row_id, key=key)
        return self._kek.seal_small_secret(value.reveal_bytes(), aad)

    def _open(self, row: EphemeralRow) -> SecretValue:
        aad = ephemeral_secret_aad(org_id=row.org_id, secret_id=row.id, key=row.key)
        return SecretValue(self._kek.open_small_secret(row.ciphertext, aad).decode("utf-8"))
