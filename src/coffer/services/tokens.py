"""Listing and revoking tokens, and API keys (at most ``MAX_API_KEYS`` active per person)."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.durations import parse_duration
from coffer.domain.errors import Conflict, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.models import CallContext
from coffer.domain.team import IssuedToken, TokenInfo
from coffer.services.access import AccessGate
from coffer.services.token_issuer import API_KEY, issue_token
from coffer.storage import token_store, user_store

MAX_API_KEYS = 5
MAX_KEY_TTL = 365 * 86400
MAX_TOKEN_NAME = 128


def validate_token_name(name: object, *, field: str = "name") -> str:
    """Returns a trimmed token name; raises InvalidInput when empty, too long or not text."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{field} must be a non-empty name", field=field)
    name = name.strip()
    if len(name) > MAX_TOKEN_NAME or any(not c.isprintable() for c in name):
        raise InvalidInput(
            f"{field} must be at most {MAX_TOKEN_NAME} printable characters", field=field
        )
    return name


class TokenService:
    """A person's tokens and API keys; admins may list and revoke anyone's."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

    def list_tokens(self, ctx: CallContext, *, everyone: bool = False) -> list[TokenInfo]:
        """Returns the caller's active tokens, or with ``everyone`` every active token of
        the organization (admins and owners)."""
        self._gate.require(ctx, Action.TEAM_VIEW if everyone else Action.SELF_MANAGE)
        with self._engine.connect() as conn:
            return token_store.list_tokens(
                conn,
                ctx.actor.org_id,
                now=time.time(),
                identity_id=None if everyone else ctx.actor.id,
            )

    def revoke(self, ctx: CallContext, token_id: str, *, kind: str | None = None) -> TokenInfo:
        """Revokes one active token (of ``kind``, when given): the caller's own, or anyone's
        for admins and owners. Raises NotFound for an unknown id (or another person's, to a
        non-admin, or one of another kind)."""
        self._gate.require(ctx, Action.SELF_MANAGE)
        admin = self._gate.allows(ctx, Action.TEAM_MANAGE)
        now = time.time()
        with self._engine.begin() as conn:
            found = token_store.find_token(conn, ctx.actor.org_id, token_id, now)
            mine = found is not None and found.identity_id == ctx.actor.id
            if found is None or not (mine or admin) or (kind and found.kind != kind):
                raise NotFound(f"no active token {token_id!r}", field="id")
            token_store.revoke_tokens(conn, now=now, token_id=found.id)
            event = Event.APIKEY_REVOKED if found.kind == API_KEY else Event.TOKEN_REVOKED
            self._audit.append(
                conn,
                ctx,
                event,
                metadata={"token_id": found.id, "kind": found.kind, "owner": found.identity_id},
            )
        return found

    def create_api_key(
        self, ctx: CallContext, name: str, *, expires_in: str | int | None = None
    ) -> IssuedToken:
        """Creates an API key acting as the caller (shown once). Raises Conflict when the
        caller already holds ``MAX_API_KEYS`` active keys."""
        name = validate_token_name(name)
        ttl = (
            None
            if expires_in is None
            else parse_duration(expires_in, field="expires_in", minimum=60, maximum=MAX_KEY_TTL)
        )
        self._gate.require(ctx, Action.SELF_MANAGE)
        now = time.time()
        with self._engine.begin() as conn:
            # Lock the person's row so two concurrent creations cannot both pass the count.
            user_store.find_user(conn, ctx.actor.id, for_update=True)
            active = token_store.count_active(conn, ctx.actor.id, API_KEY, now)
            if active >= MAX_API_KEYS:
                raise Conflict(
                    f"you already have {MAX_API_KEYS} active API keys, the most allowed; "
                    "revoke one with `coffer keys revoke ID` first",
                    field="name",
                )
            issued = issue_token(
                conn,
                org_id=ctx.actor.org_id,
                kind=API_KEY,
                name=name,
                identity_id=ctx.actor.id,
                identity_kind=str(ctx.actor.kind),
                now=now,
                expires_at=None if ttl is None else now + ttl,
            )
            self._audit.append(
                conn,
                ctx,
                Event.APIKEY_CREATED,
                metadata={"token_id": issued.info.id, "name": name},
            )
        return issued

    def list_api_keys(self, ctx: CallContext) -> list[TokenInfo]:
        """Returns the caller's active API keys."""
        self._gate.require(ctx, Action.SELF_MANAGE)
        with self._engine.connect() as conn:
            return token_store.list_tokens(
                conn, ctx.actor.org_id, now=time.time(), identity_id=ctx.actor.id, kinds=(API_KEY,)
            )
