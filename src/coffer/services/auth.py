"""Turns a bearer token into an ``Actor``. Roles and grants arrive with access control."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from coffer.crypto.tokens import hash_token, token_kind
from coffer.domain.errors import Unauthenticated
from coffer.domain.models import Actor, ActorKind
from coffer.storage import token_store

_UNAUTHENTICATED = "a valid API token is required (Authorization: Bearer <token>)"


class Authenticator:
    """Checks tokens against their stored hashes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def authenticate(self, token: str | None) -> Actor:
        """Returns the actor owning ``token``; raises Unauthenticated when the token is
        missing, malformed, has a bad checksum, is unknown, revoked or expired. The message
        is the same in every case."""
        if not token or token_kind(token) is None:
            raise Unauthenticated(_UNAUTHENTICATED)
        with self._engine.connect() as conn:
            record = token_store.find_active_token(conn, hash_token(token), time.time())
        if record is None:
            raise Unauthenticated(_UNAUTHENTICATED)
        return Actor(
            id=record.identity_id,
            kind=ActorKind(record.identity_kind),
            org_id=record.org_id,
            name=record.name,
        )
