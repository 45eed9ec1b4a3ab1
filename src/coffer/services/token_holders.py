"""Who holds a token: its identity, role, grants and restrictions, cached per node.

Every authenticated request starts here. A token's holder is loaded with the two queries
of ``storage.actor_store`` and kept in an ``EpochCache`` of the ``ACCESS`` family, so a
revocation, role change, grant change or deletion anywhere (any node) makes it stale. Only
API, CLI and machine tokens are cached; a browser session's idle clock must move on use, so
sessions always take the database path (``Authenticator``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coffer.domain.models import Actor
from coffer.services.read_cache import EpochCache, Stamp
from coffer.storage.actor_store import (
    ACTOR_QUERY,
    GRANTS_QUERY,
    IDENTITY_ID,
    IDLE_TIMEOUT,
    TOKEN_EXPIRES_AT,
    actor_from_rows,
)
from coffer.storage.raw_statements import CompiledStatement, raw_reads


@dataclass(frozen=True)
class TokenHolder:
    """A token's identity, as cached: the actor and when the token expires (None: never)."""

    actor: Actor
    expires_at: float | None

    def active(self, now: float) -> bool:
        """False once the token has expired."""
        return self.expires_at is None or now < self.expires_at


class TokenHolders:
    """Finds the holder of a (non-session) token by its hash, from the cache or the database."""

    def __init__(self, engine: Engine, cache: EpochCache[str, TokenHolder]) -> None:
        self._engine = engine
        self._cache = cache
        self._actor_query = CompiledStatement(ACTOR_QUERY, engine)
        self._grants_query = CompiledStatement(GRANTS_QUERY, engine)

    def cached(self, token_hash: str, now: float) -> TokenHolder | None:
        """The cached holder while it is valid (no I/O), else None."""
        return self._cache.get(token_hash, now)

    def stamp(self, now: float) -> Stamp | None:
        """The stamp to load under (take it before loading, on the caller's thread)."""
        return self._cache.stamp(now)

    def load(self, token_hash: str, now: float, stamp: Stamp | None) -> TokenHolder | None:
        """The holder from the database, cached under ``stamp``; None for an unknown,
        revoked or expired token, a session token, or a removed identity."""
        with raw_reads(self._engine) as tx:
            who = tx.fetch_one(self._actor_query, {"token_hash": token_hash, "now": now})
            if who is None or who[IDLE_TIMEOUT] is not None:
                return None
            grant_rows = tx.fetch_all(
                self._grants_query, {"identity_id": who[IDENTITY_ID], "now": now}
            )
        actor = actor_from_rows(who, grant_rows)
        if actor is None:
            return None
        holder = TokenHolder(actor, who[TOKEN_EXPIRES_AT])
        self._cache.put(token_hash, holder, stamp)
        return holder

    def find(self, token_hash: str, now: float) -> TokenHolder | None:
        """``cached`` or else ``load``: the holder of an active token, or None."""
        holder = self.cached(token_hash, now) or self.load(token_hash, now, self.stamp(now))
        return holder if holder is not None and holder.active(now) else None
