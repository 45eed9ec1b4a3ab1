"""Turns a token (bearer header or session cookie) into an ``Actor`` with its role, grants
and restrictions."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from coffer.crypto.tokens import hash_token, token_kind
from coffer.domain.errors import Unauthenticated
from coffer.domain.models import Actor
from coffer.services.token_holders import TokenHolders
from coffer.storage import actor_store

SESSION_TOKEN_KIND = "sess"
_UNAUTHENTICATED = "a valid API token is required (Authorization: Bearer <token>)"
# A session's idle clock is moved at most this often (or a quarter of its idle timeout, when
# that is shorter), so reads do not each cost a write.
_TOUCH_EVERY_SECONDS = 30.0


class Authenticator:
    """Checks tokens against their stored hashes."""

    def __init__(self, engine: Engine, holders: TokenHolders | None = None) -> None:
        self._engine = engine
        self._holders = holders

    def authenticate(self, token: str | None, *, from_cookie: bool = False) -> Actor:
        """Returns the actor owning ``token``; raises Unauthenticated when the token is
        missing, malformed, has a bad checksum, is unknown, revoked, expired (absolutely or
        idle), belongs to an identity that no longer exists, or is a session token sent
        other than as the session cookie. The message is the same in every case."""
        kind = token_kind(token) if token else None
        if kind is None or (kind == SESSION_TOKEN_KIND) != from_cookie:
            raise Unauthenticated(_UNAUTHENTICATED)
        assert token is not None
        now = time.time()
        if self._holders is not None and kind != SESSION_TOKEN_KIND:
            holder = self._holders.find(hash_token(token), now)
            if holder is None:
                raise Unauthenticated(_UNAUTHENTICATED)
            return holder.actor
        with self._engine.connect() as conn:
            found = actor_store.load_actor(conn, hash_token(token), now)
            if found is None:
                raise Unauthenticated(_UNAUTHENTICATED)
            actor, row = found
            idle, last_used = row[actor_store.IDLE_TIMEOUT], row[actor_store.LAST_USED_AT]
            touch_every = min(_TOUCH_EVERY_SECONDS, idle / 4) if idle is not None else 0.0
            if idle is not None and (last_used is None or now - last_used > touch_every):
                actor_store.touch_token(conn, row[actor_store.TOKEN_ID], now)
                conn.commit()
        return actor
