"""The authenticated read of a secret's current value, as lean as it can be.

Every application hits this on every deploy, so it runs as one driver-level transaction of
three queries and one insert: the token and its identity, the identity's grants, the
one-query read bundle, the ``secret.read`` audit entry; the policy decides in between, with
the same function as everywhere else. Anything but the plain success (bad token, session
token, denied access, unknown name, missing secret, decryption failure, a secret with a TTL
or read limit) returns None and the caller takes the full path, which produces the
exact error; the rules therefore live in one place and this path only short-cuts success.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.crypto.tokens import hash_token, token_kind
from coffer.domain.access import Action
from coffer.domain.errors import DecryptionFailed, RateLimited
from coffer.domain.events import Event
from coffer.domain.models import CallContext, RevealedSecret
from coffer.domain.names import is_valid_key_name, is_valid_resource_name
from coffer.services.access import decision_for
from coffer.services.auth import SESSION_TOKEN_KIND
from coffer.services.secret_ops import SecretCipher
from coffer.services.throttle import Throttle
from coffer.storage.actor_store import (
    ACTOR_QUERY,
    GRANTS_QUERY,
    IDENTITY_ID,
    IDLE_TIMEOUT,
    actor_from_rows,
)
from coffer.storage.raw_statements import CompiledStatement, raw_transaction
from coffer.storage.secret_store import READ_QUERY, read_bundle_from_row


class FastSecretReader:
    """Reads the current value of one secret for a bearer token, or returns None."""

    def __init__(
        self, engine: Engine, cipher: SecretCipher, audit: AuditWriter, throttle: Throttle
    ) -> None:
        self._engine = engine
        self._throttle = throttle
        self._cipher = cipher
        self._audit = audit
        self._actor_query = CompiledStatement(ACTOR_QUERY, engine)
        self._grants_query = CompiledStatement(GRANTS_QUERY, engine)
        self._read_query = CompiledStatement(READ_QUERY, engine)

    def read(
        self,
        token: str,
        project: str,
        environment: str,
        key: str,
        *,
        source_ip: str | None,
        user_agent: str | None,
    ) -> RevealedSecret | None:
        """Returns the current version with its value, having recorded ``secret.read`` in
        the same transaction; None when the full path must decide (never raises CofferError
        for a request problem)."""
        if token_kind(token) in (None, SESSION_TOKEN_KIND) or not (
            is_valid_resource_name(project)
            and is_valid_resource_name(environment)
            and is_valid_key_name(key)
        ):
            return None
        now = time.time()
        with raw_transaction(self._engine) as tx:
            who = tx.fetch_one(self._actor_query, {"token_hash": hash_token(token), "now": now})
            if who is None or who[IDLE_TIMEOUT] is not None:
                return None
            grant_rows = tx.fetch_all(
                self._grants_query, {"identity_id": who[IDENTITY_ID], "now": now}
            )
            actor = actor_from_rows(who, grant_rows)
            if actor is None or not self._within_rate(actor.id):
                return None
            ctx = CallContext(actor=actor, source_ip=source_ip, user_agent=user_agent)
            allowed = decision_for(
                ctx, Action.SECRET_READ, project=project, environment=environment, now=now
            ).allowed
            if not allowed:
                return None
            row = tx.fetch_one(
                self._read_query,
                {
                    "org_id": actor.org_id,
                    "project": project,
                    "environment": environment,
                    "key": key,
                    "version": None,
                },
            )
            if row is None:
                return None
            bundle = read_bundle_from_row(
                row, org_id=actor.org_id, project=project, environment=environment
            )
            if bundle.limits.limited:
                return None  # counted reads and expiry are the full path's
            try:
                value = self._cipher.open_bundle(bundle, key)
            except DecryptionFailed:
                return None
            entry = self._audit.entry(
                ctx,
                Event.SECRET_READ,
                project=project,
                environment=environment,
                key=key,
                metadata={"version": bundle.stored.version, "via": "get"},
            )
            self._audit.append_raw(self._engine, tx, entry)
        stored = bundle.stored
        return RevealedSecret(
            key=key,
            version=stored.version,
            value=value,
            created_at=stored.created_at,
            comment=stored.comment,
        )

    def _within_rate(self, identity_id: str) -> bool:
        """Counts the request against the identity's limit; False when over it (the full
        path then counts again and answers 429)."""
        try:
            self._throttle.hit("api_per_identity", identity_id)
        except RateLimited:
            return False
        return True
