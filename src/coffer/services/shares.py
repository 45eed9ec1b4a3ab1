"""Shares: client-side ciphertext behind an unguessable link, which the server stores but can
never open. The link's token is stored only as a hash; the key stays in the link's fragment,
and a read needs a proof of that key (``crypto.share_cipher.share_proof``), so a link seen
without its fragment cannot even burn the share. A share always expires (a day unless told
otherwise) and is read once unless told otherwise; its last read burns or seals it.

Anyone in the organization may create one; whoever holds the whole link reads it, recorded as
an ``anonymous`` actor in the creator's organization.
"""

from __future__ import annotations

import hmac
import re
import time

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.crypto.tokens import hash_token, mint_link_token
from coffer.domain.access import Action
from coffer.domain.errors import Gone, InvalidInput, NotFound, TooLarge
from coffer.domain.events import Event
from coffer.domain.models import (
    Actor,
    ActorKind,
    CallContext,
    CreatedShare,
    EphemeralInfo,
    EphemeralKind,
    OpenedShare,
)
from coffer.domain.read_limits import ReadLimits
from coffer.services.access import AccessGate
from coffer.services.ephemeral_rows import EphemeralRows, info_of, with_default_ttl
from coffer.services.secret_ops import Limits
from coffer.storage import ephemeral_store
from coffer.storage.ephemeral_store import EphemeralRow
from coffer.storage.ids import new_id

ENVELOPE_OVERHEAD = 64  # a share's envelope: version, nonce and tag around the value
MAX_LINK_TOKEN_CHARS = 64
_PROOF = re.compile(r"[A-Za-z0-9_-]{43}")  # see crypto.share_cipher.share_proof

_NOT_FOUND = NotFound(
    "share not found: the link is wrong, has expired or was already opened", field="token"
)
_SEALED = Gone("share is sealed: its read limit was reached", field="token")


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


def _find(conn: sa.Connection, token: str) -> EphemeralRow:
    """The share behind a link token, expired or not; raises NotFound."""
    if not token or len(token) > MAX_LINK_TOKEN_CHARS:
        raise _NOT_FOUND
    row = ephemeral_store.find_by_lookup(conn, hash_token(token))
    if row is None:
        raise _NOT_FOUND
    return row


class ShareService:
    """Creates shares, describes them, and hands their ciphertext to link holders."""

    def __init__(
        self, engine: Engine, rows: EphemeralRows, gate: AccessGate, limits: Limits
    ) -> None:
        self._engine = engine
        self._rows = rows
        self._gate = gate
        self._limits = limits

    def create(
        self, ctx: CallContext, envelope: bytes, proof: str, limits: ReadLimits
    ) -> CreatedShare:
        """Stores a share's client-side ciphertext (TTL a day unless given; a read limit is
        required) with the hash of the proof that opens it, and returns the token of its
        link, which is stored only as a hash. Records ``secret.created`` (key: the share's
        id). Raises TooLarge for an envelope bigger than a value may be, InvalidInput for an
        empty one, a malformed proof or no read limit; changes nothing then."""
        if not envelope:
            raise InvalidInput("ciphertext must not be empty", field="ciphertext")
        if limits.max_reads is None:
            raise InvalidInput("max_reads: a share needs a read limit", field="max_reads")
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
        with self._engine.begin() as conn:
            row = ephemeral_store.insert(
                conn,
                row_id=row_id,
                org_id=ctx.actor.org_id,
                kind=EphemeralKind.SHARE,
                key=row_id,
                ciphertext=envelope,
                created_by=ctx.actor.id,
                limits=limits,
                now=time.time(),
                lookup_hash=hash_token(token),
                proof_hash=hash_token(proof),
            )
            self._rows.audit.append(
                conn,
                ctx,
                Event.SECRET_CREATED,
                key=row_id,
                metadata={"kind": "share", **limits.audit_fields()},
            )
        return CreatedShare(token=token, info=info_of(row))

    def open(
        self, token: str, proof: str, *, source_ip: str | None, user_agent: str | None
    ) -> OpenedShare:
        """Returns a share's ciphertext to whoever holds its whole link (the token and, as
        ``proof``, evidence of the fragment's key), counting the read (the last allowed one
        burns or seals it) and recording ``secret.read`` by an anonymous actor. Raises
        NotFound for a wrong, expired or spent link or a wrong proof (which counts
        nothing), Gone for a sealed one."""
        now = time.time()
        with self._engine.begin() as conn:
            row = _find(conn, token)
            if not _proof_matches(row, proof):
                raise _NOT_FOUND
            if not row.limits.expired(now):
                ctx = _link_holder(row.org_id, source_ip, user_agent)
                state = self._rows.read(conn, ctx, row, now=now, missing=_NOT_FOUND, sealed=_SEALED)
                return OpenedShare(ciphertext=row.ciphertext, limits=state)
        self._rows.expire(None, row)
        raise _NOT_FOUND

    def info(self, token: str) -> EphemeralInfo:
        """Returns a share's limits without reading it (the share page, ``HEAD``). Raises
        NotFound for a wrong, expired or spent link."""
        with self._engine.begin() as conn:
            row = _find(conn, token)
        if row.limits.expired(time.time()):
            raise _NOT_FOUND
        return info_of(row)
